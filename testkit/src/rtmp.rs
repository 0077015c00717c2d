//! RTMP for the runtime-camera tests: nginx with its RTMP module as the
//! server, and an ffmpeg "drone" publishing H.264 to it.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{free_port, require, wait_for, words, TempDir};

/// nginx with the RTMP module on a free port, in its own directory.
pub struct Nginx {
    child: Child,
    pub port: u16,
    dir: TempDir,
}

impl Nginx {
    pub fn start(idle_streams: bool) -> Self {
        require("nginx", "nginx libnginx-mod-rtmp");
        let module = ["/usr/lib/nginx/modules/ngx_rtmp_module.so"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("nginx's RTMP module is missing: sudo apt-get install libnginx-mod-rtmp");
        let dir = TempDir::new("nginx");
        let port = free_port();
        let conf = format!(
            "load_module {module};\ndaemon off;\nmaster_process off;\npid {pid};\nerror_log {log} info;\n\
             events {{ worker_connections 64; }}\n\
             rtmp {{ server {{ listen 127.0.0.1:{port}; application live {{ live on; idle_streams {idle}; }} }} }}\n",
            pid = dir.path("nginx.pid").display(),
            log = dir.path("error.log").display(),
            idle = if idle_streams { "on" } else { "off" },
        );
        std::fs::write(dir.path("nginx.conf"), conf).unwrap();
        let child = Command::new("nginx")
            .args([
                "-p",
                &dir.0.display().to_string(),
                "-c",
                &dir.path("nginx.conf").display().to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nginx");
        wait_for("nginx listening", Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        Nginx { child, port, dir }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "---- nginx error log ----\n{}",
                std::fs::read_to_string(self.dir.path("error.log")).unwrap_or_default()
            );
        }
    }
}

/// An ffmpeg "drone" publishing H.264 over RTMP: 640x360 at 15 fps.
pub fn drone(url: &str) -> Child {
    drone_at(url, "640x360", 15, None)
}

/// An ffmpeg "drone" publishing H.264 over RTMP at `size` and `fps`, a
/// keyframe a second, at `bitrate` (x264's own choice without one).
pub fn drone_at(url: &str, size: &str, fps: u32, bitrate: Option<&str>) -> Child {
    require("ffmpeg", "ffmpeg");
    let mut ffmpeg = Command::new("ffmpeg");
    ffmpeg
        .args(words("-hide_banner -loglevel error -re -f lavfi -i"))
        .arg(format!("testsrc2=size={size}:rate={fps}"))
        .args(words(
            "-c:v libx264 -preset ultrafast -tune zerolatency -pix_fmt yuv420p",
        ))
        .args(["-g", &fps.to_string()]);
    if let Some(bitrate) = bitrate {
        ffmpeg.args(["-b:v", bitrate]);
    }
    ffmpeg
        .args(["-f", "flv", url])
        .stdin(Stdio::null())
        .spawn()
        .expect("start ffmpeg")
}

pub fn stop(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

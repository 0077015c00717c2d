//! The fMP4 writer checked by the tools users play recordings with: ffprobe
//! reads codec, size and frame count, ffmpeg decodes every frame, and a
//! file cut in the middle of its last fragment (a crash) still plays up to it.

use std::path::Path;
use std::process::Command;

use camera_node::mjpeg::Splitter;
use shared::fmp4::{fragment, init_segment, Sample, SampleEntry};
use testkit::{make_mjpeg, require, TempDir};

/// `count` JPEGs of ffmpeg's test picture, 4:2:0 with standard tables.
fn jpegs(count: u32) -> Vec<bytes::Bytes> {
    let dir = TempDir::new("jpegs");
    let path = dir.path("clip.mjpeg");
    make_mjpeg(&path, "320x240", count);
    let mut splitter = Splitter::default();
    splitter.push(&std::fs::read(&path).unwrap());
    std::iter::from_fn(|| splitter.next_frame())
        .map(Result::unwrap)
        .collect()
}

fn probe(path: &Path, entries: &str) -> String {
    require("ffprobe", "ffmpeg");
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-count_frames",
            "-select_streams",
            "v:0",
            "-show_entries",
            entries,
        ])
        .args(["-of", "default=noprint_wrappers=1"])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ffprobe: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn write_file(path: &Path, frames: &[bytes::Bytes], per_fragment: usize) -> Vec<usize> {
    let mut file = init_segment(&SampleEntry::Jpeg {
        width: 320,
        height: 240,
    })
    .to_vec();
    let mut ends = Vec::new();
    for (n, chunk) in frames.chunks(per_fragment).enumerate() {
        let samples: Vec<Sample> = chunk
            .iter()
            .map(|j| Sample {
                duration: 3000,
                key: true,
                data: j,
            })
            .collect();
        file.extend_from_slice(&fragment(
            n as u32 + 1,
            (n * per_fragment * 3000) as u64,
            Some(1_800_000_000_000_000 + (n * per_fragment) as u64 * 33_333),
            &samples,
        ));
        ends.push(file.len());
    }
    std::fs::write(path, &file).unwrap();
    ends
}

#[test]
fn ffprobe_reads_mjpeg_at_the_right_size_and_count_and_ffmpeg_decodes_it() {
    let dir = std::env::temp_dir().join(format!("camfleet-fmp4-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("a.mp4");
    write_file(&path, &jpegs(30), 10);
    let info = probe(
        &path,
        "stream=codec_name,width,height,nb_read_frames,r_frame_rate",
    );
    for want in [
        "codec_name=mjpeg",
        "width=320",
        "height=240",
        "nb_read_frames=30",
        "r_frame_rate=30/1",
    ] {
        assert!(info.contains(want), "{want} not in\n{info}");
    }
    let decode = Command::new("ffmpeg")
        .args(["-v", "error", "-xerror", "-i"])
        .arg(&path)
        .args(["-f", "null", "-"])
        .output()
        .unwrap();
    assert!(
        decode.status.success() && decode.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&decode.stderr)
    );
    let times = probe(&path, "frame=pts_time");
    let last = times.lines().last().unwrap();
    assert_eq!(last, "pts_time=0.966667", "frame 30 of 30 fps at 29/30 s");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_file_cut_inside_its_last_fragment_still_plays_the_earlier_ones() {
    let dir = std::env::temp_dir().join(format!("camfleet-fmp4-cut-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("cut.mp4.part");
    let ends = write_file(&path, &jpegs(30), 10);
    let whole = std::fs::read(&path).unwrap();
    std::fs::write(&path, &whole[..ends[1] + (ends[2] - ends[1]) / 2]).unwrap();
    let info = probe(&path, "stream=nb_read_frames");
    let frames: u32 = info
        .trim()
        .trim_start_matches("nb_read_frames=")
        .parse()
        .unwrap();
    assert!(frames >= 20, "the two whole fragments must play: {info}");
    std::fs::remove_dir_all(&dir).unwrap();
}

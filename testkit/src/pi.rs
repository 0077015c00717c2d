//! A Pi's /proc and /sys as the node's health sampler reads them
//! (`--health-root`): a directory the test fills and changes.

use std::path::Path;

use super::TempDir;

pub const THERMAL: &str = "sys/class/thermal/thermal_zone0/temp";
pub const THROTTLED: &str = "sys/devices/platform/soc/soc:firmware/get_throttled";
pub const WIRELESS: &str = "proc/net/wireless";

/// A fake Pi root: 52.3 C, not throttled, Wi-Fi at -61 dBm, 3.7 GiB of
/// memory with 2 GiB available.
pub struct FakePi {
    pub root: TempDir,
}

impl Default for FakePi {
    fn default() -> Self {
        Self::new()
    }
}

impl FakePi {
    pub fn new() -> Self {
        let pi = FakePi {
            root: TempDir::new("pi-root"),
        };
        pi.put(THERMAL, "52300\n");
        pi.put(THROTTLED, "0\n");
        pi.signal(-61);
        pi.put(
            "proc/meminfo",
            "MemTotal:        3884132 kB\nMemFree:         1000000 kB\nMemAvailable:    2097152 kB\n",
        );
        pi.put("proc/loadavg", "0.52 0.40 0.30 1/200 1234\n");
        pi.put("proc/stat", "cpu  100 0 100 800 0 0 0 0 0 0\n");
        pi
    }

    pub fn path(&self) -> &Path {
        &self.root.0
    }

    /// `--health-root <dir>` as flags.
    pub fn flag(&self) -> [&str; 2] {
        ["--health-root", self.root.0.to_str().unwrap()]
    }

    /// Writes `file` whole (beside, then renamed), as the kernel's change.
    pub fn put(&self, file: &str, text: &str) {
        let path = self.root.0.join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let temp = path.with_extension("new");
        std::fs::write(&temp, text).unwrap();
        std::fs::rename(&temp, &path).unwrap();
    }

    pub fn remove(&self, file: &str) {
        std::fs::remove_file(self.root.0.join(file)).unwrap();
    }

    pub fn temperature_milli(&self, milli: u32) {
        self.put(THERMAL, &format!("{milli}\n"));
    }

    /// `/proc/net/wireless` with wlan0 at `dbm` (7 retries).
    pub fn signal(&self, dbm: i32) {
        self.put(
            WIRELESS,
            &format!(
                "Inter-| sta-|   Quality        |   Discarded packets               | Missed | WE\n \
                 face | tus | link level noise |  nwid  crypt   frag  retry   misc | beacon | 22\n  \
                 wlan0: 0000   50.  {dbm}.  -256        0      0      0     7      0        0\n"
            ),
        );
    }
}

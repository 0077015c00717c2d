//! A ZIP archive written as a stream (APPNOTE 6.3.10): entries stored
//! (MJPEG and CSV do not shrink), each followed by a data descriptor with
//! its CRC-32 and sizes, ZIP64 throughout so a session past 4 GiB is whole.
//! Nothing is seeked and nothing is held in memory but one read buffer and
//! the central directory (a few dozen bytes an entry).

use std::io::{self, Read, Write};
use std::path::Path;

/// Bytes read from a file at a time.
const CHUNK: usize = 256 * 1024;

struct Central {
    name: String,
    crc: u32,
    size: u64,
    offset: u64,
    dos_time: u16,
    dos_date: u16,
}

pub struct ZipStream<W: Write> {
    out: W,
    written: u64,
    entries: Vec<Central>,
}

impl<W: Write> ZipStream<W> {
    pub fn new(out: W) -> Self {
        ZipStream {
            out,
            written: 0,
            entries: Vec::new(),
        }
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// Adds the file at `path` as `name` (`/`-separated, relative).
    pub fn add_file(&mut self, name: &str, path: &Path) -> io::Result<()> {
        let mut file = std::fs::File::open(path)?;
        let modified = file.metadata()?.modified().ok();
        let (dos_time, dos_date) = dos_stamp(modified);
        let offset = self.written;
        let mut head = Vec::with_capacity(30 + name.len() + 20);
        head.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        head.extend_from_slice(&45u16.to_le_bytes()); // version needed: ZIP64
        head.extend_from_slice(&0x0808u16.to_le_bytes()); // data descriptor, UTF-8 name
        head.extend_from_slice(&0u16.to_le_bytes()); // stored
        head.extend_from_slice(&dos_time.to_le_bytes());
        head.extend_from_slice(&dos_date.to_le_bytes());
        head.extend_from_slice(&0u32.to_le_bytes()); // CRC: in the descriptor
        head.extend_from_slice(&u32::MAX.to_le_bytes()); // sizes: in ZIP64 fields
        head.extend_from_slice(&u32::MAX.to_le_bytes());
        head.extend_from_slice(&(name.len() as u16).to_le_bytes());
        head.extend_from_slice(&20u16.to_le_bytes());
        head.extend_from_slice(name.as_bytes());
        head.extend_from_slice(&1u16.to_le_bytes()); // ZIP64 extra field
        head.extend_from_slice(&16u16.to_le_bytes());
        head.extend_from_slice(&[0u8; 16]); // sizes follow in the descriptor
        self.put(&head)?;
        let mut crc = Crc32::default();
        let mut size = 0u64;
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            crc.update(&buf[..n]);
            size += n as u64;
            self.put(&buf[..n])?;
        }
        let crc = crc.value();
        let mut descriptor = Vec::with_capacity(24);
        descriptor.extend_from_slice(&0x0807_4b50u32.to_le_bytes());
        descriptor.extend_from_slice(&crc.to_le_bytes());
        descriptor.extend_from_slice(&size.to_le_bytes());
        descriptor.extend_from_slice(&size.to_le_bytes());
        self.put(&descriptor)?;
        self.entries.push(Central {
            name: name.to_owned(),
            crc,
            size,
            offset,
            dos_time,
            dos_date,
        });
        Ok(())
    }

    /// Writes the central directory and the end records.
    pub fn finish(mut self) -> io::Result<W> {
        let directory_at = self.written;
        let entries = std::mem::take(&mut self.entries);
        for e in &entries {
            let mut c = Vec::with_capacity(46 + e.name.len() + 28);
            c.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
            c.extend_from_slice(&(45u16 | (3 << 8)).to_le_bytes()); // made by: Unix
            c.extend_from_slice(&45u16.to_le_bytes());
            c.extend_from_slice(&0x0808u16.to_le_bytes());
            c.extend_from_slice(&0u16.to_le_bytes());
            c.extend_from_slice(&e.dos_time.to_le_bytes());
            c.extend_from_slice(&e.dos_date.to_le_bytes());
            c.extend_from_slice(&e.crc.to_le_bytes());
            c.extend_from_slice(&u32::MAX.to_le_bytes());
            c.extend_from_slice(&u32::MAX.to_le_bytes());
            c.extend_from_slice(&(e.name.len() as u16).to_le_bytes());
            c.extend_from_slice(&28u16.to_le_bytes());
            c.extend_from_slice(&0u16.to_le_bytes()); // comment
            c.extend_from_slice(&0u16.to_le_bytes()); // disk
            c.extend_from_slice(&0u16.to_le_bytes()); // internal attributes
            c.extend_from_slice(&(0o100644u32 << 16).to_le_bytes());
            c.extend_from_slice(&u32::MAX.to_le_bytes()); // offset: in ZIP64
            c.extend_from_slice(e.name.as_bytes());
            c.extend_from_slice(&1u16.to_le_bytes());
            c.extend_from_slice(&24u16.to_le_bytes());
            c.extend_from_slice(&e.size.to_le_bytes());
            c.extend_from_slice(&e.size.to_le_bytes());
            c.extend_from_slice(&e.offset.to_le_bytes());
            self.put(&c)?;
        }
        let directory_size = self.written - directory_at;
        let zip64_end_at = self.written;
        let count = entries.len() as u64;
        let mut end = Vec::with_capacity(56 + 20 + 22);
        end.extend_from_slice(&0x0606_4b50u32.to_le_bytes());
        end.extend_from_slice(&44u64.to_le_bytes());
        end.extend_from_slice(&(45u16 | (3 << 8)).to_le_bytes());
        end.extend_from_slice(&45u16.to_le_bytes());
        end.extend_from_slice(&0u32.to_le_bytes());
        end.extend_from_slice(&0u32.to_le_bytes());
        end.extend_from_slice(&count.to_le_bytes());
        end.extend_from_slice(&count.to_le_bytes());
        end.extend_from_slice(&directory_size.to_le_bytes());
        end.extend_from_slice(&directory_at.to_le_bytes());
        end.extend_from_slice(&0x0706_4b50u32.to_le_bytes()); // locator
        end.extend_from_slice(&0u32.to_le_bytes());
        end.extend_from_slice(&zip64_end_at.to_le_bytes());
        end.extend_from_slice(&1u32.to_le_bytes());
        end.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
        end.extend_from_slice(&0u16.to_le_bytes());
        end.extend_from_slice(&0u16.to_le_bytes());
        end.extend_from_slice(&u16::MAX.to_le_bytes());
        end.extend_from_slice(&u16::MAX.to_le_bytes());
        end.extend_from_slice(&u32::MAX.to_le_bytes());
        end.extend_from_slice(&u32::MAX.to_le_bytes());
        end.extend_from_slice(&0u16.to_le_bytes());
        self.put(&end)?;
        self.out.flush()?;
        Ok(self.out)
    }
}

/// A file's modification time as MS-DOS date and time (UTC).
fn dos_stamp(modified: Option<std::time::SystemTime>) -> (u16, u16) {
    use chrono::{Datelike, Timelike};
    let Some(t) = modified.map(chrono::DateTime::<chrono::Utc>::from) else {
        return (0, (1 << 5) | 1); // 1980-01-01
    };
    let year = (t.year() - 1980).clamp(0, 127) as u16;
    let time = ((t.hour() as u16) << 11) | ((t.minute() as u16) << 5) | (t.second() as u16 / 2);
    let date = (year << 9) | ((t.month() as u16) << 5) | t.day() as u16;
    (time, date)
}

/// CRC-32 (IEEE 802.3, the ZIP one), a table at a time.
#[derive(Default)]
struct Crc32(u32);

impl Crc32 {
    fn update(&mut self, bytes: &[u8]) {
        static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
        let table = TABLE.get_or_init(|| {
            let mut t = [0u32; 256];
            for (i, entry) in t.iter_mut().enumerate() {
                let mut c = i as u32;
                for _ in 0..8 {
                    c = if c & 1 != 0 {
                        0xEDB8_8320 ^ (c >> 1)
                    } else {
                        c >> 1
                    };
                }
                *entry = c;
            }
            t
        });
        let mut c = !self.0;
        for &b in bytes {
            c = table[((c ^ u32::from(b)) & 0xFF) as usize] ^ (c >> 8);
        }
        self.0 = !c;
    }

    fn value(&self) -> u32 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_is_the_zip_one() {
        let mut c = Crc32::default();
        c.update(b"123456789");
        assert_eq!(c.value(), 0xCBF4_3926);
        let mut split = Crc32::default();
        split.update(b"1234");
        split.update(b"56789");
        assert_eq!(split.value(), 0xCBF4_3926);
    }

    #[test]
    fn unzip_reads_what_is_written() {
        let dir = std::env::temp_dir().join(format!("camfleet-zip-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("a.bin"), vec![7u8; 300_000]).unwrap();
        std::fs::write(dir.join("b.csv"), b"received_at,topic,payload\n").unwrap();
        let mut zip = ZipStream::new(Vec::new());
        zip.add_file("s/a.bin", &dir.join("a.bin")).unwrap();
        zip.add_file("s/b.csv", &dir.join("b.csv")).unwrap();
        let bytes = zip.finish().unwrap();
        std::fs::write(dir.join("out.zip"), &bytes).unwrap();
        let test = std::process::Command::new("unzip")
            .args(["-t"])
            .arg(dir.join("out.zip"))
            .output()
            .expect("unzip (sudo apt-get install unzip)");
        let said = String::from_utf8_lossy(&test.stdout);
        assert!(
            test.status.success() && said.contains("No errors"),
            "{said}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}

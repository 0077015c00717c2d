use super::*;

#[test]
fn sizes_and_percentages_parse_as_the_docs_say() {
    assert_eq!(parse_size("500MB"), Ok(500_000_000));
    assert_eq!(parse_size("20GB"), Ok(20_000_000_000));
    assert_eq!(parse_size("1.5TiB"), Ok(1_649_267_441_664));
    assert_eq!(parse_size("4096"), Ok(4096));
    assert_eq!(parse_size("64 KiB"), Ok(65_536));
    assert!(parse_size("lots").is_err());
    assert!(parse_size("5XB").is_err());
    assert_eq!(parse_keep_free("10%"), Ok(KeepFree::Percent(10.0)));
    assert_eq!(parse_keep_free("2GB"), Ok(KeepFree::Bytes(2_000_000_000)));
    assert!(parse_keep_free("120%").is_err());
}

fn segment(dir: &Path, session: &str, start: &str, size: usize) -> PathBuf {
    let cam = dir.join(session).join("pi").join("cam0");
    std::fs::create_dir_all(&cam).unwrap();
    let path = cam.join(format!("{start}.mp4"));
    std::fs::write(&path, vec![0u8; size]).unwrap();
    path
}

#[test]
fn the_oldest_closed_segments_go_first_never_an_open_one() {
    let dir = std::env::temp_dir().join(format!("camfleet-retention-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let a = segment(&dir, "20261101T100000Z", "20261101T100000Z", 1000);
    std::fs::write(dir.join("20261101T100000Z/sensors.csv"), "x").unwrap();
    let b = segment(&dir, "20261102T100000Z", "20261102T100000Z", 1000);
    let c = segment(&dir, "20261102T100000Z", "20261102T100100Z", 1000);
    let open = dir.join("20261102T100000Z/pi/cam0/20261102T100200Z.mp4.part");
    std::fs::write(&open, vec![0u8; 5000]).unwrap();
    let freed = Freed::default();
    let budget = Retention {
        max_size: Some(6500),
        ..Retention::default()
    };
    budget.enforce(&dir, Utc::now(), &freed);
    assert!(!a.exists() && !b.exists() && c.exists() && open.exists());
    assert!(
        !dir.join("20261101T100000Z").exists(),
        "session with its csv gone"
    );
    let freed_now = (
        freed.segments.load(Ordering::Relaxed),
        freed.bytes.load(Ordering::Relaxed),
    );
    assert_eq!(freed_now, (2, 2000));
    // Nothing closed is left to take once only the open one remains.
    let tight = Retention {
        max_size: Some(10),
        ..Retention::default()
    };
    tight.enforce(&dir, Utc::now(), &freed);
    assert!(!c.exists() && open.exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn segments_moved_aside_are_counted_and_deleted_by_the_same_rules() {
    let dir = std::env::temp_dir().join(format!("camfleet-aside-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let kept = segment(&dir, "20261103T100000Z", "20261103T100100Z", 1000);
    let aside = kept.with_file_name("20261103T100000Z.mp4.4242.aside");
    std::fs::write(&aside, vec![0u8; 3000]).unwrap();
    assert_eq!(
        closed_segment_start("20261103T100000Z.mp4.4242.aside"),
        closed_segment_start("20261103T100000Z.mp4")
    );
    assert_eq!(closed_segment_start("20261103T100000Z.mp4.part"), None);
    assert_eq!(closed_segment_start("notes.aside"), None);
    let freed = Freed::default();
    Retention::default().enforce(&dir, Utc::now(), &freed);
    assert_eq!(freed.holding.load(Ordering::Relaxed), 4000, "counted");
    let budget = Retention {
        max_size: Some(2000),
        ..Retention::default()
    };
    budget.enforce(&dir, Utc::now(), &freed);
    assert!(
        !aside.exists() && kept.exists(),
        "the older, aside, goes first"
    );
    assert_eq!(freed.bytes.load(Ordering::Relaxed), 3000);
    // By age too: a week later both are past --keep-days 1.
    let by_age = Retention {
        keep_days: Some(1),
        ..Retention::default()
    };
    std::fs::write(&aside, vec![0u8; 10]).unwrap();
    let later = Utc::now() + chrono::Duration::days(365 * 2);
    by_age.enforce(&dir, later, &freed);
    assert!(!aside.exists() && !kept.exists());
    let _ = std::fs::remove_dir_all(&dir);
}

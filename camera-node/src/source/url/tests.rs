use super::*;
use crate::source::secrets::MAX_SOURCE_LEN;

fn parse(text: &str) -> Result<UrlSource, String> {
    UrlSource::parse(text).expect("a URL source")
}

#[test]
fn schemes_and_bad_text() {
    assert_eq!(
        parse("rtmp://10.0.0.5/live/d1").unwrap().scheme,
        Scheme::Rtmp
    );
    assert_eq!(parse("RTSP://cam/x").unwrap().scheme, Scheme::Rtsp);
    assert_eq!(parse("/dev/video0").unwrap().scheme, Scheme::Device);
    assert!(UrlSource::parse("test").is_none());
    assert!(UrlSource::parse("cmd:ffmpeg -i http://cam/x -f mjpeg -").is_none());
    assert!(UrlSource::parse("file:/srv/a://b.mjpeg").is_none());
    assert!(parse("gopher://x/y")
        .unwrap_err()
        .contains("unknown scheme"));
    assert!(parse("rtsp://a b/c").unwrap_err().contains("spaces"));
    assert!(parse("rtsp:///c").unwrap_err().contains("no host"));
    assert!(parse("rtmp-listen://0.0.0.0:1935/live").is_err());
    assert!(parse("/dev/../etc/passwd").is_err());
    let long = format!("http://h/{}", "a".repeat(MAX_SOURCE_LEN));
    assert!(parse(&long).unwrap_err().contains("at most"));
    assert!(check_text("-filter_complex").is_err());
}

#[test]
fn passwords_are_redacted_everywhere() {
    let s = parse("rtsp://admin:s3cret@10.0.0.9:554/stream1").unwrap();
    assert_eq!(s.to_string(), "rtsp://admin:***@10.0.0.9:554/stream1");
    assert_eq!(s.password(), Some("s3cret"));
    assert!(!format!("{s:?}").contains("s3cret"));
}

#[test]
fn listen_urls_become_ffmpeg_listeners() {
    let s = parse("rtmp-listen://127.0.0.1/live/key").unwrap();
    assert!(s.waits_for_publisher());
    let args = s.ffmpeg_args(&Output::default(), Plan::Convert(Codec::Mjpeg));
    let i = args.iter().position(|a| a == "-i").unwrap();
    assert_eq!(args[i + 1], "rtmp://127.0.0.1:1935/live/key");
    assert!(args.windows(2).any(|w| w == ["-listen", "1"]));
    let s = parse("rtmp-listen://0.0.0.0:19350/a/b").unwrap();
    let args = s.ffmpeg_args(&Output::default(), Plan::Convert(Codec::Mjpeg));
    assert!(args.contains(&"rtmp://0.0.0.0:19350/a/b".to_owned()));
}

#[test]
fn conversions_are_bounded_and_copies_are_copies() {
    let s = parse("rtsp://cam/x").unwrap();
    let out = Output {
        width: Some(640),
        height: Some(360),
        fps: Some(15),
        quality: 100,
        codec: None,
    };
    let args = s.ffmpeg_args(&out, Plan::Convert(Codec::Mjpeg));
    assert!(args
        .windows(2)
        .any(|w| w == ["-vf", "scale=640:360,fps=15"]));
    assert!(args.windows(2).any(|w| w == ["-q:v", "2"]));
    assert!(args.windows(2).any(|w| w == ["-rtsp_transport", "tcp"]));
    let copy = s.ffmpeg_args(&out, Plan::Copy(Codec::Mjpeg));
    assert!(copy.windows(2).any(|w| w == ["-c:v", "copy"]));
    assert!(!copy.contains(&"-vf".to_owned()));
    let h264 = s.ffmpeg_args(&out, Plan::Copy(Codec::H264));
    assert!(h264.windows(2).any(|w| w == ["-c:v", "copy"]));
    assert!(h264.windows(2).any(|w| w == ["-f", "h264"]));
    assert!(!h264.contains(&"-vf".to_owned()));
    let plain = s.ffmpeg_args(&Output::default(), Plan::Convert(Codec::Mjpeg));
    let vf = &plain[plain.iter().position(|a| a == "-vf").unwrap() + 1];
    assert!(vf.contains("min(iw,1920)"), "{vf}");
    assert_eq!(qscale(1), 31);
}

#[test]
fn probes_decide_copying() {
    let p = parse_probe(
        br#"{"streams":[{"codec_name":"mjpeg","width":640,"height":480,"avg_frame_rate":"30/1"}]}"#,
    )
    .unwrap();
    assert_eq!(p.fps, Some(30));
    assert_eq!(Plan::of(&p, &Output::default()), Plan::Copy(Codec::Mjpeg));
    let smaller = Output {
        width: Some(320),
        ..Output::default()
    };
    assert_eq!(Plan::of(&p, &smaller), Plan::Convert(Codec::Mjpeg));
    let h264 = Probed {
        codec: "h264".into(),
        ..p.clone()
    };
    assert_eq!(Plan::of(&h264, &Output::default()), Plan::Copy(Codec::H264));
    let mjpeg = Output {
        codec: Some(Codec::Mjpeg),
        ..Output::default()
    };
    assert_eq!(Plan::of(&h264, &mjpeg), Plan::Convert(Codec::Mjpeg));
    let hevc = Probed {
        codec: "hevc".into(),
        ..p
    };
    assert_eq!(
        Plan::of(&hevc, &Output::default()),
        Plan::Convert(Codec::Mjpeg)
    );
    assert!(parse_probe(br#"{"streams":[]}"#).is_err());
    assert!(parse_probe(b"garbage").is_err());
}

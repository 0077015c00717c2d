//! The RTSP server's reading of client bytes: framing into requests and
//! interleaved packets, then what each request names (camera path,
//! session, transports) and its credentials. Nothing may panic, and
//! framing always makes progress or waits for more.
#![no_main]

use camera_node::auth::{User, Users};
use camera_node::serve::rtsp::request::{camera_path, choose_transport, frame, session_id, Framed, MAX_REQUEST};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let users = Users::new(vec![User {
        name: "alice".into(),
        password: "pw".into(),
    }]);
    let mut rest = data;
    loop {
        match frame(rest) {
            Framed::Incomplete => {
                assert!(rest.len() <= MAX_REQUEST + 4 + 65_535);
                break;
            }
            Framed::Skip(n) => {
                assert!(n > 0 && n <= rest.len());
                rest = &rest[n..];
            }
            Framed::Request(request, used) => {
                assert!(used > 0 && used <= rest.len());
                rest = &rest[used..];
                if let Some(url) = request.request_uri() {
                    let _ = camera_path(url.path());
                }
                let _ = session_id(&request);
                let _ = choose_transport(&request);
                let auth = request
                    .header(&rtsp_types::headers::AUTHORIZATION)
                    .map(|v| v.as_str());
                let _ = users.allows(auth, request.method().into(), "nonce");
            }
            Framed::TooLarge | Framed::Malformed => break,
        }
    }
});

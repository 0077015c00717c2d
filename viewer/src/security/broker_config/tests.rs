use super::*;

fn request(nodes: &[&str], viewers: &[&str], operators: &[&str]) -> Request {
    let list = |l: &[&str]| l.iter().map(|s| s.to_string()).collect();
    Request {
        nodes: list(nodes),
        viewers: list(viewers),
        operators: list(operators),
        sensors: Vec::new(),
        hosts: vec!["broker.lan".into()],
        port: 8883,
        prefix: "camfleet".into(),
        out: PathBuf::from("unused"),
        conf_dir: None,
        cert: None,
        key: None,
        ca: None,
        certs_for: Vec::new(),
        homeassistant: false,
        force: false,
    }
}

#[test]
fn each_user_writes_only_its_own_topics() {
    let r = request(&["pi-door"], &["ws", "lab"], &["alice", "ws"]);
    let accounts = accounts(&r).unwrap();
    let names: Vec<&str> = accounts.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["pi-door", "ws", "lab", "alice"], "ws once");
    let acl = acl(&accounts, "camfleet", &r.operators, false);
    let block = |user: &str| -> Vec<String> {
        acl.split("\nuser ")
            .find(|b| b.starts_with(&format!("{user}\n")))
            .unwrap()
            .lines()
            .skip(1)
            .take_while(|l| l.starts_with("topic"))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(
        block("pi-door"),
        [
            "topic write camfleet/node/pi-door/#",
            "topic write sensor/pi-door/#",
            "topic write response/getIP",
            "topic read command/getIP",
            "topic read camfleet/#",
        ]
    );
    assert!(block("ws").contains(&"topic write command/rec".to_owned()));
    assert!(!block("lab").contains(&"topic write command/rec".to_owned()));
    assert_eq!(
        block("alice"),
        [
            "topic write command/rec",
            "topic write camfleet/node/+/camera/+/set",
            "topic read camfleet/#"
        ]
    );
}

#[test]
fn home_assistant_gets_a_user_and_viewers_may_announce_to_it() {
    let mut r = request(&["pi-door"], &["ws"], &["alice"]);
    r.homeassistant = true;
    let users = accounts(&r).unwrap();
    assert_eq!(users.last().unwrap().name, "homeassistant");
    let acl = acl(&users, "camfleet", &r.operators, true);
    let ha = acl.split("\nuser homeassistant\n").nth(1).unwrap();
    assert!(
        ha.starts_with("topic write command/rec\ntopic read camfleet/#\n"),
        "{ha}"
    );
    let ws = acl.split("\nuser ws\n").nth(1).unwrap();
    assert!(ws.contains("topic write homeassistant/#"), "{ws}");
    r.nodes.push("homeassistant".into());
    assert!(accounts(&r).is_err(), "the name is taken");
}

#[test]
fn bad_names_and_a_name_in_two_roles_are_refused() {
    for bad in ["", "a b", "a/b", "#", "+", "x:y"] {
        assert!(accounts(&request(&[bad], &[], &[])).is_err(), "{bad:?}");
    }
    let e = accounts(&request(&["pi"], &["pi"], &[])).unwrap_err();
    assert!(e.to_string().contains("both a node and a viewer"), "{e}");
    assert!(
        accounts(&request(&[], &[], &["alice"])).is_err(),
        "no fleet"
    );
}

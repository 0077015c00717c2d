//! Where each camera comes from when viewers relay (`viewer --relay`): the
//! camera's node plans who takes it from whom and publishes the plan
//! (retained); each camera link follows its place in it, falling back to
//! the backup and then the node when a parent fails.

use std::net::IpAddr;
use std::time::Duration;

use shared::relay::{PlanEntry, RelayPlan, RELAY_VERSION};

/// A relay parent that sends nothing for this long is left for the backup.
pub const RELAY_STALL: Duration = Duration::from_secs(1);

/// Where one camera comes from, by the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub epoch: u64,
    /// Parent viewer id; `None` for the node.
    pub parent: Option<String>,
    pub parent_addr: String,
    pub backup: Option<String>,
    pub backup_addr: String,
}

impl Route {
    pub fn from_plan(plan: &RelayPlan, entry: &PlanEntry) -> Self {
        Route {
            epoch: plan.epoch,
            parent: entry.parent.clone(),
            parent_addr: entry.parent_addr.clone(),
            backup: entry.backup.clone(),
            backup_addr: entry.backup_addr.clone(),
        }
    }
}

/// Where to connect: the plan's parent, else its backup, skipping relays
/// that failed under this plan, else the node; with the relay's id when it
/// is one.
pub fn pick(route: Option<&Route>, failed: &[String], node: &str) -> (String, Option<String>) {
    if let Some(r) = route {
        for (addr, id) in [(&r.parent_addr, &r.parent), (&r.backup_addr, &r.backup)] {
            if !failed.contains(addr) {
                return (addr.clone(), id.clone());
            }
        }
    }
    (node.to_owned(), None)
}

/// A relay plan, checked: JSON of the known version.
pub fn parse_plan(payload: &[u8]) -> std::result::Result<RelayPlan, String> {
    let plan: RelayPlan =
        serde_json::from_slice(payload).map_err(|e| format!("not a relay plan: {e}"))?;
    if plan.v != RELAY_VERSION {
        return Err(format!(
            "plan version {} (this viewer reads {})",
            plan.v, RELAY_VERSION
        ));
    }
    Ok(plan)
}

/// The address other viewers should use for this one: the bind address
/// when it is a specific one, else the local address of the route to the
/// broker (a UDP socket "connected" there sends nothing).
pub fn advertised_host(bind: IpAddr, broker_host: &str, broker_port: u16) -> String {
    if !bind.is_unspecified() {
        return bind.to_string();
    }
    let local = std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| s.connect((broker_host, broker_port)).map(|()| s))
        .and_then(|s| s.local_addr());
    match local {
        Ok(a) if !a.ip().is_unspecified() => a.ip().to_string(),
        _ => "127.0.0.1".into(),
    }
}

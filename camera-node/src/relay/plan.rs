//! The relay planner: for each of its cameras the node plans who receives
//! it from whom (only the node plans; the payloads are `shared::relay`'s).
//! The plan is a pure function of the previous plan and the viewers that
//! announce they watch the camera ([`replan`]), published retained with an
//! epoch. Viewers sit in numbered slots; a slot's parent follows from its
//! number alone:
//!
//! - `chain` (the default): groups of `max_member` slots; the first of a
//!   group is its head, fed by the head of the group before (the first
//!   head by the node); the others are members fed by their head. A head
//!   feeds at most `max_member` (its members and the next head).
//! - `tree`: slot `i` is fed by slot `(i - 1) / max_member`, slot 0 by the
//!   node: a `max_member`-ary tree, depth logarithmic in the audience.
//!
//! Changes are minimal: a joining viewer takes the first free slot it may
//! hold (or a new one at the end); a leaving viewer's slot is refilled by
//! the newest viewer that may hold it (the one in the last slot), and
//! nobody else moves. Slots with children need a viewer that can relay (a
//! reachable relay address, not degraded); one that cannot is only ever a
//! leaf, and is fed by the node when no leaf slot is free. Recording
//! viewers are placed before others that join at the same time.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use shared::relay::{Layout, Topology};

/// A viewer watching the camera, as the planner sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub id: String,
    /// Whether it can pass the camera on (a relay address, not degraded).
    pub can_relay: bool,
    pub recording: bool,
}

/// Where one viewer takes the camera from. `None` is the node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Feed {
    pub parent: Option<String>,
    /// The parent of the parent (else the node): where to go at once when
    /// the parent dies, before the next plan.
    pub backup: Option<String>,
    /// Hops from the node (1: fed by the node).
    pub depth: u32,
}

/// The slot that feeds slot `i`, by number alone.
fn parent_slot(i: usize, n: usize, topology: Topology) -> Option<usize> {
    match topology {
        Topology::Chain => {
            let (group, position) = (i / n, i % n);
            match (group, position) {
                (0, 0) => None,
                (g, 0) => Some((g - 1) * n),
                (g, _) => Some(g * n),
            }
        }
        Topology::Tree => (i > 0).then(|| (i - 1) / n),
    }
}

/// Whether slot `i` may feed others (so needs a viewer that can relay).
fn feeds(i: usize, n: usize, topology: Topology) -> bool {
    match topology {
        Topology::Chain => i % n == 0,
        Topology::Tree => true,
    }
}

/// Whether slot `i` of `len` slots has a child slot in use.
fn has_children(slots: &[Option<String>], i: usize, n: usize, topology: Topology) -> bool {
    (i + 1..slots.len()).any(|j| slots[j].is_some() && parent_slot(j, n, topology) == Some(i))
}

/// The next layout: `prev` with the viewers gone removed and the new ones
/// placed, moving as few as possible: a join moves nobody, a leave at most
/// `max_member + 1` viewers.
pub fn replan(
    prev: &Layout,
    viewers: &[Candidate],
    max_member: usize,
    topology: Topology,
) -> Layout {
    let n = max_member.max(1);
    let by_id: BTreeMap<&str, &Candidate> = viewers.iter().map(|c| (c.id.as_str(), c)).collect();
    // A tree has no leaf slots to speak of: only relays hold its slots.
    let may_hold = |slot: usize, id: &str| {
        by_id.get(id).is_some_and(|c| {
            c.can_relay || (topology == Topology::Chain && !feeds(slot, n, topology))
        })
    };
    let mut slots = prev.slots.clone();
    // Gone, or no longer allowed where it sits (it stopped relaying): out.
    let mut vacated = Vec::new();
    for (i, slot) in slots.iter_mut().enumerate() {
        if slot.as_deref().is_some_and(|id| !may_hold(i, id)) {
            *slot = None;
            vacated.push(i);
        }
    }
    let mut direct: Vec<String> = prev
        .direct
        .iter()
        .filter(|id| by_id.contains_key(id.as_str()))
        .cloned()
        .collect();
    let placed: BTreeSet<String> = slots.iter().flatten().chain(&direct).cloned().collect();
    let joins = viewers.iter().any(|c| !placed.contains(&c.id));
    // With nothing else to do, an older free slot is refilled too.
    let mut settled = vacated.is_empty();
    if settled && !joins {
        vacated.extend((0..slots.len()).filter(|&i| slots[i].is_none()).take(1));
    }
    // Refill each slot freed now with the newest viewer that may hold it
    // and feeds nobody (a move that disturbs no one else).
    for i in vacated {
        let newest = (i + 1..slots.len()).rev().find(|&j| {
            slots[j].as_deref().is_some_and(|id| may_hold(i, id))
                && !has_children(&slots, j, n, topology)
        });
        if let Some(j) = newest {
            slots[i] = slots[j].take();
            settled = false;
        }
    }
    // A feeding slot nobody can refill (a chain head whose group has no
    // relay left): its members would overload the head above, so the node
    // feeds them until the slot is refilled.
    for i in 0..slots.len() {
        if slots[i].is_some() {
            continue;
        }
        for j in i + 1..slots.len() {
            if parent_slot(j, n, topology) == Some(i) && !has_children(&slots, j, n, topology) {
                if let Some(id) = slots[j].take() {
                    direct.push(id);
                    settled = false;
                }
            }
        }
    }
    while slots.last().is_some_and(|s| s.is_none()) {
        slots.pop();
    }
    // Newcomers, recording ones first, each in the first free slot it may
    // hold that feeds nobody yet and whose parent slot is in use, else at
    // the end; a leaf where only a feeding slot is left goes to the node.
    let mut joining: Vec<&Candidate> = viewers.iter().filter(|c| !placed.contains(&c.id)).collect();
    joining.sort_by_key(|c| !c.recording);
    let takeable = |slots: &[Option<String>], i: usize, id: &str| {
        slots[i].is_none()
            && may_hold(i, id)
            && !has_children(slots, i, n, topology)
            && parent_slot(i, n, topology).is_none_or(|p| slots[p].is_some())
    };
    for c in &joining {
        match (0..slots.len()).find(|&i| takeable(&slots, i, &c.id)) {
            Some(i) => slots[i] = Some(c.id.clone()),
            None if may_hold(slots.len(), &c.id)
                && parent_slot(slots.len(), n, topology).is_none_or(|p| slots[p].is_some()) =>
            {
                slots.push(Some(c.id.clone()))
            }
            None => direct.push(c.id.clone()),
        }
    }
    // When nothing else moved, viewers fed by the node take the free slots
    // they may hold (each move changes only the mover's own parent); a
    // relay may open a slot at the end.
    if settled && !joins {
        let mut k = 0;
        while k < direct.len() {
            let id = direct[k].clone();
            let free = (0..slots.len()).find(|&i| takeable(&slots, i, &id));
            let end = slots.len();
            let at_end = may_hold(end, &id)
                && parent_slot(end, n, topology).is_none_or(|p| slots[p].is_some());
            match free {
                Some(i) => slots[i] = Some(direct.remove(k)),
                None if at_end => slots.push(Some(direct.remove(k))),
                None => k += 1,
            }
        }
    }
    Layout { slots, direct }
}

/// Each viewer's feed in a layout: its slot's parent, or the nearest
/// ancestor slot in use when that one is free.
pub fn feeds_of(layout: &Layout, max_member: usize, topology: Topology) -> BTreeMap<String, Feed> {
    let n = max_member.max(1);
    let slots = &layout.slots;
    let up = |mut i: usize| -> Option<usize> {
        loop {
            i = parent_slot(i, n, topology)?;
            if slots[i].is_some() {
                return Some(i);
            }
        }
    };
    let mut out = BTreeMap::new();
    for (i, id) in slots.iter().enumerate() {
        let Some(id) = id else { continue };
        let parent = up(i);
        let backup = parent.and_then(up);
        let mut depth = 1;
        let mut at = parent;
        while let Some(p) = at {
            depth += 1;
            at = up(p);
        }
        out.insert(
            id.clone(),
            Feed {
                parent: parent.and_then(|p| slots[p].clone()),
                backup: backup.and_then(|b| slots[b].clone()),
                depth,
            },
        );
    }
    for id in &layout.direct {
        out.insert(
            id.clone(),
            Feed {
                parent: None,
                backup: None,
                depth: 1,
            },
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// xorshift64*: reproducible random joins and leaves.
    struct Rng(u64);
    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) % n
        }
    }

    fn check(layout: &Layout, viewers: &[Candidate], n: usize, topology: Topology) {
        let feeds = feeds_of(layout, n, topology);
        // Everyone planned once, nobody else.
        let ids: BTreeSet<&str> = viewers.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(
            feeds.keys().map(String::as_str).collect::<BTreeSet<_>>(),
            ids
        );
        let placed: Vec<&String> = layout
            .slots
            .iter()
            .flatten()
            .chain(&layout.direct)
            .collect();
        assert_eq!(placed.len(), ids.len(), "a viewer placed twice: {layout:?}");
        let mut children: BTreeMap<&str, usize> = BTreeMap::new();
        for (id, feed) in &feeds {
            if let Some(p) = &feed.parent {
                *children.entry(p).or_default() += 1;
                let parent = viewers.iter().find(|c| &c.id == p).expect("parent watches");
                assert!(parent.can_relay, "{p} cannot relay but feeds {id}");
            }
            // Acyclic, and the depth is the number of hops up to the node.
            let mut hops = 1;
            let mut at = feed.parent.clone();
            while let Some(p) = at {
                hops += 1;
                assert!(hops <= ids.len() + 1, "a cycle through {id}");
                at = feeds[&p].parent.clone();
            }
            assert_eq!(hops, feed.depth as usize);
        }
        for (p, count) in children {
            assert!(count <= n, "{p} feeds {count} > {n}: {layout:?}");
        }
        let bound = match topology {
            Topology::Chain => ids.len().div_ceil(n) + 1,
            Topology::Tree => {
                let mut depth = 1;
                let mut reach = 1;
                while reach < ids.len() {
                    depth += 1;
                    reach = reach * n + 1;
                }
                depth + 1
            }
        };
        let deepest = feeds.values().map(|f| f.depth as usize).max().unwrap_or(0);
        assert!(
            deepest <= bound.max(2),
            "{topology:?} n={n}: depth {deepest} > {bound} for {} viewers: {layout:?}",
            ids.len()
        );
    }

    fn moved(a: &BTreeMap<String, Feed>, b: &BTreeMap<String, Feed>) -> usize {
        a.iter()
            .filter(|(id, f)| b.get(*id).is_some_and(|g| g.parent != f.parent))
            .count()
    }

    #[test]
    fn plans_keep_their_properties_through_random_joins_and_leaves() {
        for topology in [Topology::Chain, Topology::Tree] {
            for seed in 1..200u64 {
                let mut rng = Rng(seed * 0x9E37_79B9);
                let n = 1 + rng.below(4) as usize;
                let mut viewers: Vec<Candidate> = Vec::new();
                let mut layout = Layout::default();
                for step in 0..60 {
                    let before = feeds_of(&layout, n, topology);
                    let leave = !viewers.is_empty() && rng.below(3) == 0;
                    if leave {
                        let gone = viewers.remove(rng.below(viewers.len() as u64) as usize);
                        layout = replan(&layout, &viewers, n, topology);
                        let after = feeds_of(&layout, n, topology);
                        assert!(
                            moved(&before, &after) <= n + 1,
                            "{topology:?} n={n} seed {seed}: {} left and {} moved",
                            gone.id,
                            moved(&before, &after)
                        );
                    } else {
                        viewers.push(Candidate {
                            id: format!("v{step}"),
                            can_relay: rng.below(5) != 0,
                            recording: rng.below(4) == 0,
                        });
                        layout = replan(&layout, &viewers, n, topology);
                        let after = feeds_of(&layout, n, topology);
                        assert_eq!(
                            moved(&before, &after),
                            0,
                            "{topology:?} n={n} seed {seed}: a join moved someone"
                        );
                    }
                    check(&layout, &viewers, n, topology);
                }
            }
        }
    }

    #[test]
    fn recording_viewers_joining_together_sit_nearer_the_node() {
        let viewers = [("watch", false), ("rec", true)].map(|(id, recording)| Candidate {
            id: id.into(),
            can_relay: true,
            recording,
        });
        let layout = replan(&Layout::default(), &viewers, 2, Topology::Chain);
        let feeds = feeds_of(&layout, 2, Topology::Chain);
        assert_eq!(feeds["rec"].depth, 1);
        assert_eq!(feeds["watch"].parent.as_deref(), Some("rec"));
    }

    #[test]
    fn a_chain_of_seven_in_groups_of_three() {
        let viewers: Vec<Candidate> = (1..=7)
            .map(|i| Candidate {
                id: format!("v{i}"),
                can_relay: true,
                recording: false,
            })
            .collect();
        let mut layout = Layout::default();
        for i in 1..=7 {
            layout = replan(&layout, &viewers[..i], 3, Topology::Chain);
        }
        let feeds = feeds_of(&layout, 3, Topology::Chain);
        let parent = |id: &str| feeds[id].parent.as_deref();
        assert_eq!(parent("v1"), None);
        for (child, head) in [
            ("v2", "v1"),
            ("v3", "v1"),
            ("v4", "v1"),
            ("v5", "v4"),
            ("v6", "v4"),
            ("v7", "v4"),
        ] {
            assert_eq!(parent(child), Some(head), "{child}");
        }
        assert_eq!(feeds["v5"].backup.as_deref(), Some("v1"));
        // The second head leaves: the newest takes its slot, only its
        // group and the next head change parent.
        let without: Vec<Candidate> = viewers.iter().filter(|c| c.id != "v4").cloned().collect();
        let next = replan(&layout, &without, 3, Topology::Chain);
        let after = feeds_of(&next, 3, Topology::Chain);
        assert_eq!(after["v5"].parent.as_deref(), Some("v7"));
        assert_eq!(after["v7"].parent.as_deref(), Some("v1"));
    }
}

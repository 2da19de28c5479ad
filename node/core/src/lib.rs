//! ringcache-core: the pure cluster model the node and the operator share. No I/O, no
//! async, no locks: plain data and functions over it, with property tests as their
//! contract.
//!
//! | module | owns |
//! |---|---|
//! | [`slot`] | key → hash slot (`CRC16-XMODEM(hashtag) mod 16384`) |
//! | [`slotset`] | [`slotset::SlotSet`], a set of slots as a bitmap |
//! | [`topology`] | nodes, slot ranges and their owners, validation, the per-slot index |
//! | [`view`] | a validated topology with one node's place in it |
//! | [`placement`] | (current owners, members, weights, zones, R) → the owners of every slot |
//! | [`promote`] | the node-side safety check of a failover promotion |
//! | [`handover`] | the handover plan: moves, stages and the topology of each step |
//! | [`hotkeys`] | the heavy-hitter sketch behind hot-key detection: top keys over a sliding window |
//! | [`roles`] | how Redis Cluster clients see a topology: primaries, virtual replicas at replica addresses |
//! | [`status`] | what a node reports about itself (`GetStatus`) |

pub mod handover;
pub mod hotkeys;
pub mod placement;
pub mod promote;
pub mod roles;
pub mod slot;
pub mod slotset;
pub mod status;
pub mod topology;
pub mod view;

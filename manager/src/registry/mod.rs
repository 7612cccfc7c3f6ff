//! The registry behind `/v2` (spec §3.14, protocols §4): which registry a repository is
//! routed to.

pub mod routing;

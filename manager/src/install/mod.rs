//! Installing the pull agent from this manager, without the internet: the install script
//! (`GET /install`) and the binary it downloads, which is the manager's own (`alien` is one
//! multi-call binary, `alien agent` among its commands).

pub mod executable;
pub mod script;

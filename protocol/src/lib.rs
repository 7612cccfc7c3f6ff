//! What crosses the Unix sockets between our processes, defined once so that the two sides
//! cannot drift: a daemon serves these types and the manager (or, later, another client)
//! sends them. One module per socket; nothing here does any I/O.
//!
//! | module | socket | served by | called by |
//! |---|---|---|---|
//! | [`commandd`] | `run/commandd.sock` | commandd | the manager |
//! | [`otelfwd`] | `run/otelfwd.sock` | otelfwd | the manager |
//! | [`registryd`] | `run/registryd.sock` | registryd | the manager |
//!
//! [`commands`] holds the public commands protocol's bodies: the manager parses a client's
//! request with them and forwards it to commandd unchanged inside the socket's own requests,
//! and commandd answers with them; the CLI and the agent speak the same bodies to a manager.

pub mod commandd;
pub mod commands;
pub mod otelfwd;
pub mod registryd;

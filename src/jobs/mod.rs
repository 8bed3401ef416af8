//! Background jobs. Each is a public `*_once(&deps, now)` unit that tests call directly, plus a
//! dumb loop that sleeps, backs off on errors and stops when cancelled.

pub mod sweeper;

//! Domain types and rules: newtypes parsed at the edge and the services built on them. Knows
//! nothing of HTTP, SQL or files.

pub mod clock;

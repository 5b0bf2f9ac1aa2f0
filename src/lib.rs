//! roster: declarative Bitrix24 workgroup membership. `run()` sequences
//! load → fetch → plan → render → apply; the modules below own one step each.

pub mod model;
pub mod plan;
pub mod provider;
pub mod render;
pub mod sandbox;
pub mod spec;

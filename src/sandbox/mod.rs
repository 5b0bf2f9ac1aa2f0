//! Emulators of the portals roster talks to, served over real HTTP. Shares no wire code with
//! `provider`: each side implements the documented format on its own.

pub mod bitrix24;
pub mod docspace;
pub mod lock;
pub mod scenario;

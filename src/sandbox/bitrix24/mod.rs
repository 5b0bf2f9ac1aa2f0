//! The Bitrix24 REST emulator (placeholder until the emulator lands).

pub mod browser;
pub mod node;

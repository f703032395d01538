//! End-to-end scenarios against real anvil processes; each test spawns its own chain, so they
//! run in parallel.

mod eip712;
mod funding;
mod lifecycle;
mod punish;
mod refuse;
mod rpc;
mod tamper;
mod token;
mod verify;

//! exo-matrix-operator: gives every eXo Platform / Meeds space a Matrix room
//! and keeps Synapse in sync with the spaces and users it is told about.

pub mod cli;
pub mod crd;
pub mod ids;
pub mod plan;
pub mod secret;
pub mod synapse;

//! Synapse adapter.

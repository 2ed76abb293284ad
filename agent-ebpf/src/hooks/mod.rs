//! One module per hook family.
pub mod kfree_skb;
pub mod sock_addr;
pub mod tc;
pub mod tcp;

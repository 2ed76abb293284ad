//! `sock:inet_sock_set_state` and `tcp:tcp_retransmit_skb`: TCP connects
//! from SYN_SENT to their end.
//!
//! Only sockets in SYN_SENT are held (`CONNECTS`, bounded; a full table
//! refuses and counts). The kernel enters SYN_SENT before it picks the
//! socket's port: the port is learnt in `tcp_connect` (fentry, where the
//! kernel allows it), else at the first SYN retransmit, and in any case when
//! the socket leaves SYN_SENT. A connect that succeeds on its first SYN costs two
//! map operations and sends nothing; one that needed retransmits, or that
//! ended in CLOSE (timeout, RST, ICMP unreachable, or its owner closing it),
//! sends one [`ConnectRecord`] with the socket error.

use aya_ebpf::{
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid,
        bpf_get_smp_processor_id, bpf_ktime_get_ns,
    },
    programs::TracePointContext,
};
use dropscope_abi::{
    CONNECT_CLOSED, CONNECT_ESTABLISHED, ConnectRecord, FAMILY_IPV4, FAMILY_IPV6, KIND_CONNECT,
    PendingConnect, RECORD_VERSION, RecordHeader, SocketStat, SourceKey, proto,
};

use crate::{
    emit,
    maps::{CONNECTING, CONNECTS, SOCKET_EVENTS, SYN_SOURCES},
    offsets, read,
};

const TCP_ESTABLISHED: i32 = 1;
const TCP_SYN_SENT: i32 = 2;

/// Reads a field of the tracepoint record at a load-time offset.
#[inline(always)]
fn field<T>(ctx: &TracePointContext, offset: u32) -> Result<T, i32> {
    // SAFETY: the offset comes from this tracepoint's format file and
    // `read_at` goes through bpf_probe_read_kernel.
    unsafe { ctx.read_at::<T>(offset as usize) }
}

/// A socket changed state.
#[inline(always)]
pub fn on_state(ctx: &TracePointContext) -> Result<(), i32> {
    let off = offsets::socket();
    let protocol: u16 = field(ctx, off.state_protocol)?;
    if protocol != u16::from(proto::TCP) {
        return Ok(());
    }
    let newstate: i32 = field(ctx, off.state_newstate)?;
    let oldstate: i32 = field(ctx, off.state_oldstate)?;
    if newstate == TCP_SYN_SENT {
        return start(ctx);
    }
    if oldstate == TCP_SYN_SENT {
        let sk: u64 = field(ctx, off.state_skaddr)?;
        let sport: u16 = field(ctx, off.state_sport)?;
        return finish(sk, newstate, sport);
    }
    Ok(())
}

/// A segment was retransmitted: counted when it is a pending socket's SYN.
#[inline(always)]
pub fn on_retransmit(ctx: &TracePointContext) -> Result<(), i32> {
    let off = offsets::socket();
    let state: i32 = field(ctx, off.retransmit_state)?;
    if state != TCP_SYN_SENT {
        return Ok(());
    }
    let sk: u64 = field(ctx, off.retransmit_skaddr)?;
    if let Some(pending) = CONNECTS.get_ptr_mut(&sk) {
        // SAFETY: a value of this map; only the socket's own path writes
        // it, and the socket's lock serialises those.
        unsafe { (*pending).retransmits += 1 };
        emit::count_socket(SocketStat::SynRetransmits);
        // Without the tcp_connect hook the port is learnt here.
        let sport: u16 = field(ctx, off.retransmit_sport)?;
        learn_port(sk, pending, sport);
    }
    Ok(())
}

/// `tcp_connect(sk)`: the first SYN is about to leave and the socket's
/// port is chosen (SYN_SENT was entered before the port was).
#[inline(always)]
pub fn on_connect(sk: u64) -> Result<(), i32> {
    let Some(pending) = CONNECTS.get_ptr_mut(&sk) else {
        return Ok(());
    };
    let off = offsets::socket();
    if !offsets::present(off.sk_num) {
        return Ok(());
    }
    let port: u16 = read::at(sk, off.sk_num)?;
    learn_port(sk, pending, port);
    Ok(())
}

/// Records a pending socket's port once known, and makes it findable by
/// the tc programs.
#[inline(always)]
fn learn_port(sk: u64, pending: *mut PendingConnect, port: u16) {
    if port == 0 {
        return;
    }
    // SAFETY: a value of this map, written only on this socket's path.
    let known = unsafe { (*pending).tuple.src_port };
    if known == port {
        return;
    }
    // SAFETY: as above.
    unsafe { (*pending).tuple.src_port = port };
    // SAFETY: as above; copied out to build the key.
    let source = source_key(unsafe { &*pending });
    let _ = SYN_SOURCES.insert(&source, &sk, 0);
}

/// The socket entered SYN_SENT (inside `connect()`, on the caller's task).
#[inline(always)]
fn start(ctx: &TracePointContext) -> Result<(), i32> {
    let off = offsets::socket();
    let sk: u64 = field(ctx, off.state_skaddr)?;
    let family: u16 = field(ctx, off.state_family)?;
    let mut pending = PendingConnect::default();
    let tuple = &mut pending.tuple;
    if family == u16::from(FAMILY_IPV4) {
        let saddr: [u8; 4] = field(ctx, off.state_saddr)?;
        let daddr: [u8; 4] = field(ctx, off.state_daddr)?;
        tuple.src_addr[..4].copy_from_slice(&saddr);
        tuple.dst_addr[..4].copy_from_slice(&daddr);
        tuple.family = FAMILY_IPV4;
    } else if family == u16::from(FAMILY_IPV6) {
        tuple.src_addr = field(ctx, off.state_saddr_v6)?;
        tuple.dst_addr = field(ctx, off.state_daddr_v6)?;
        tuple.family = FAMILY_IPV6;
    } else {
        return Ok(());
    }
    tuple.src_port = field(ctx, off.state_sport)?;
    tuple.dst_port = field(ctx, off.state_dport)?;
    tuple.protocol = proto::TCP;
    let pid_tgid = bpf_get_current_pid_tgid();
    pending.pid = (pid_tgid >> 32) as u32;
    // SAFETY: a helper without arguments.
    pending.start_ns = unsafe { bpf_ktime_get_ns() };
    // SAFETY: a helper without pointer arguments.
    pending.cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    pending.comm = bpf_get_current_comm().unwrap_or_default();
    // SAFETY: a value of this LRU map, copied out at once.
    if let Some(asked) = unsafe { CONNECTING.get(&pid_tgid) } {
        pending.asked = *asked;
        let _ = CONNECTING.remove(&pid_tgid);
    }
    if offsets::present(off.sk_net) && offsets::present(off.net_ns_inum) {
        let net: u64 = read::at(sk, off.sk_net).unwrap_or(0);
        if net != 0 {
            pending.netns = read::at(net, off.net_ns_inum).unwrap_or(0);
        }
    }
    if CONNECTS.insert(&sk, &pending, 0).is_err() {
        emit::count_socket(SocketStat::ConnectsUntracked);
        return Ok(());
    }
    // A port bound before connect() is known already; otherwise it is
    // learnt in tcp_connect (or at the first retransmit).
    if pending.tuple.src_port != 0 {
        let _ = SYN_SOURCES.insert(&source_key(&pending), &sk, 0);
    }
    emit::count_socket(SocketStat::ConnectsTracked);
    Ok(())
}

/// The socket left SYN_SENT; `sport` is its port as the tracepoint saw it
/// (chosen by now).
#[inline(always)]
fn finish(sk: u64, newstate: i32, sport: u16) -> Result<(), i32> {
    // SAFETY: a value of this map, copied out at once.
    let Some(mut pending) = (unsafe { CONNECTS.get(&sk) }).copied() else {
        return Ok(());
    };
    let _ = CONNECTS.remove(&sk);
    if pending.tuple.src_port != 0 {
        let _ = SYN_SOURCES.remove(&source_key(&pending));
    }
    if sport != 0 {
        pending.tuple.src_port = sport;
    }
    let outcome = if newstate == TCP_ESTABLISHED {
        if pending.retransmits == 0 {
            return Ok(());
        }
        CONNECT_ESTABLISHED
    } else {
        CONNECT_CLOSED
    };
    let off = offsets::socket();
    let sk_err: i32 = if outcome == CONNECT_CLOSED && offsets::present(off.sk_err) {
        read::at(sk, off.sk_err).unwrap_or(0)
    } else {
        0
    };
    let Some(mut entry) = SOCKET_EVENTS.reserve::<ConnectRecord>(0) else {
        emit::count_socket(SocketStat::ConnectRingFull);
        return Ok(());
    };
    let record = ConnectRecord {
        header: RecordHeader {
            kind: KIND_CONNECT,
            version: RECORD_VERSION,
            len: core::mem::size_of::<ConnectRecord>() as u16,
            // SAFETY: a helper without arguments.
            cpu: unsafe { bpf_get_smp_processor_id() },
        },
        outcome,
        _pad: [0; 3],
        sk_err: sk_err as u32,
        // SAFETY: a helper without arguments.
        end_ns: unsafe { bpf_ktime_get_ns() },
        pending,
    };
    entry.write(record);
    entry.submit(0);
    emit::count_socket(SocketStat::ConnectRecords);
    Ok(())
}

/// The key the tc programs find a pending socket by.
#[inline(always)]
pub fn source_key(pending: &PendingConnect) -> SourceKey {
    SourceKey {
        addr: pending.tuple.src_addr,
        port: pending.tuple.src_port,
        family: pending.tuple.family,
        protocol: proto::TCP,
    }
}

"""Writes the seed corpora of fuzz/corpus/ from dropscope's test fixtures:
`python3 fuzz/make_seeds.py .` from the repository root (needs PyYAML,
Debian's python3-yaml). Record layouts are those of agent-ebpf/abi/src/
{record,socket}.rs (little-endian), checked by the length assertions."""
import json, os, struct, sys

import yaml  # only to turn a YAML fixture into its JSON form

ROOT = sys.argv[1]
CORPUS = os.path.join(ROOT, "fuzz", "corpus")

KIND_DROP, KIND_CONNECT, KIND_DNS, VERSION = 1, 2, 3, 1
IPV4, IPV6 = 2, 10
TCP, UDP, ICMPV6 = 6, 17, 58


def write(target, name, data):
    os.makedirs(os.path.join(CORPUS, target), exist_ok=True)
    with open(os.path.join(CORPUS, target, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def header(kind, length, cpu=0):
    return struct.pack("<BBHI", kind, VERSION, length, cpu)


def tuple_(src, sport, dst, dport, protocol, family=IPV4):
    pad = lambda addr: bytes(addr) + bytes(16 - len(addr))
    return pad(src) + pad(dst) + struct.pack("<HHBB2x", sport, dport, family, protocol)


def drop(packet, ct_info=0x82, ct=None, slot=5):
    key = packet + struct.pack("<IIQQ", 12, 0, 0xFFFF0010, 0xFFFF888000001000)
    body = struct.pack("<IIQ", slot, 60, 2_000_000_000) + key
    body += struct.pack("<IIBB2xI", 3, 4, 0x02, ct_info, 4026531840)
    original, reply = ct or (bytes(40), bytes(40))
    record = header(KIND_DROP, 184, 1) + body + original + reply
    assert len(record) == 184
    return record


# The DNAT drop of agent/src/decode/tests.rs, without conntrack, and IPv6 ICMP.
client, backend, service = [10, 244, 0, 10], [10, 244, 0, 20], [10, 96, 0, 50]
dnat = drop(
    tuple_(client, 40000, backend, 8080, TCP),
    ct=(tuple_(client, 40000, service, 80, TCP), tuple_(backend, 8080, client, 40000, TCP)),
)
write("drop_record", "dnat", dnat)
write("drop_record", "no-conntrack", drop(tuple_(client, 40000, backend, 8080, TCP), ct_info=0))
v6 = tuple_(bytes(15) + b"\x01", 7, b"\xfd\x00" + bytes(13) + b"\x02", 128 << 8, ICMPV6, IPV6)
write("drop_record", "ipv6-icmp", drop(v6, ct_info=0))
write("drop_record", "no-slot", drop(tuple_(client, 1, backend, 2, UDP), ct_info=0, slot=0xFFFFFFFF))

# The connect and DNS records of agent/src/decode/socket.rs's tests.
def connect(outcome, sk_err):
    pending = struct.pack("<QQ", 1_000_000_000, 9)
    pending += tuple_([10, 0, 0, 1], 40000, [10, 96, 0, 10], 80, TCP)
    pending += bytes([10, 96, 0, 10]) + bytes(12) + struct.pack("<HBx", 80, IPV4)
    pending += b"curl" + bytes(12) + struct.pack("<IIIII8x", 42, 0, 2, 0, 0)
    record = header(KIND_CONNECT, 144) + struct.pack("<B3xIQ", outcome, sk_err, 7_000_000_000) + pending
    assert len(record) == 144
    return record


def dns_record(payload, protocol=UDP):
    body = struct.pack("<QIBxHH6x", 1, 1, 1, len(payload), len(payload))
    body += tuple_([10, 0, 0, 1], 53000, [10, 96, 0, 10], 53, protocol)
    record = header(KIND_DNS, 584) + body + payload + bytes(512 - len(payload))
    assert len(record) == 584
    return record


def name(labels):
    return b"".join(bytes([len(label)]) + label for label in labels) + b"\x00"


def message(id_, flags, labels, qtype, qdcount=1):
    return struct.pack(">HHHHHH", id_, flags, qdcount, 0, 0, 0) + name(labels) + struct.pack(">HH", qtype, 1)


query = message(0x1234, 0x0100, [b"api", b"shop"], 28)
# www.example.com A, answered through compressed names (dns/tests.rs).
response = message(0xBEEF, 0x8180, [b"www", b"example", b"com"], 1)
second = len(response) + 12
response += bytes([0xC0, 0x0C, 0, 5, 0, 1, 0, 0, 0, 60, 0, 6])
response += bytes([3]) + b"cdn" + bytes([0xC0, 0x10])
response += bytes([0xC0, second, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1])
response = response[:7] + b"\x02" + response[8:]
nxdomain = message(9, 0x8183, [b"nope", b"example"], 1)
tcp = struct.pack(">H", len(query)) + query

write("socket_record", "connect-timed-out", connect(2, 110))
write("socket_record", "connect-established", connect(1, 0))
write("socket_record", "dns-query", dns_record(query))
write("socket_record", "dns-response", dns_record(response))
write("socket_record", "dns-tcp", dns_record(tcp, TCP))

# dns_message: a mode byte (even UDP, odd TCP), then the payload.
write("dns_message", "query", b"\x00" + query)
write("dns_message", "compressed-response", b"\x00" + response)
write("dns_message", "nxdomain", b"\x00" + nxdomain)
write("dns_message", "tcp-query", b"\x01" + tcp)
write("dns_message", "no-question", b"\x00" + message(0x0101, 0x8181, [], 1, qdcount=0)[:12])

# snapshot: a fixture, the small List of the mutation tests, both as JSON.
fixture = open(os.path.join(ROOT, "agent/testdata/dns-default-deny-egress.yaml")).read()
small = (
    "apiVersion: v1\nkind: List\nitems:\n"
    "- kind: Pod\n  metadata: {name: a, namespace: b, labels: {app: a}}\n"
    "  spec: {containers: [{name: c, image: i, ports: [{containerPort: 80}]}]}\n"
    "  status: {podIP: 10.0.0.1}\n"
    "- kind: NetworkPolicy\n  apiVersion: networking.k8s.io/v1\n  metadata: {name: p, namespace: b}\n"
    "  spec: {podSelector: {matchLabels: {app: a}}, policyTypes: [Ingress]}\n"
)
write("snapshot", "dns-default-deny-egress.yaml", fixture)
write("snapshot", "small.yaml", small)
write("snapshot", "small.json", json.dumps(yaml.safe_load(small), indent=2))
write("snapshot", "dns-default-deny-egress.json", json.dumps(yaml.safe_load(fixture), indent=2))

# filter: mode 0 and a selector (serve/filter/tests/selector.rs), or an
# ObserveRequest in protobuf (allow = 6, deny = 7; EventFilter fields by
# number from observer.proto).
for index, selector in enumerate(
    ["app=web,env!=dev", "env in (dev,prod),!canary", "example.com/team notin (a,)", "tier"]
):
    write("filter", f"selector-{index}", b"\x00" + selector.encode())


def varint(value):
    out = b""
    while True:
        low, value = value & 0x7F, value >> 7
        out += bytes([low | (0x80 if value else 0)])
        if not value:
            return out


def field(number, payload):
    return varint((number << 3) | 2) + varint(len(payload)) + payload


def filters(*fields):
    return b"".join(field(number, value) for number, value in fields)


requests = {
    # allow: namespace, label, ip; deny: tcp_flags SYN, reason.
    "allow-and-deny": field(6, filters((1, b"shop"), (5, b"app=web"), (9, b"10.0.0.0/8")))
    + field(7, filters((14, b"SYN,ACK"), (15, b"NETFILTER_DROP"))),
    # allow: pod prefix, workload, service, policy, dns_name; ports 53 and
    # 8080, verdict 2 (packed varints).
    "names-and-numbers": field(
        6,
        filters((2, b"shop/web-"), (6, b"Deployment/web"), (7, b"shop/api"), (17, b"shop/deny-all"), (23, b"svc.cluster.local"))
        + field(12, varint(53) + varint(8080))
        + field(16, varint(2)),
    ),
    # A bad CIDR in the second allow filter (compile/tests.rs).
    "bad-cidr": field(6, b"") + field(6, filters((9, b"10.0.0.300/8"))),
}
for name_, request in requests.items():
    write("filter", f"request-{name_}", b"\x01" + request)

# Client service: the KV operations a client (kvctl, tests, benchmarks) asks a node for.
#
# Design: one generic `call` carrying a `Command` instead of one method per operation.
# `Command` and `Reply` mirror kvr::KvCommand and kvr::KvReply (core/command.h) field for
# field, so the server converts a request with one codec call (schemas/codec.h), hands it
# to the replica, and converts the reply back; adding an operation to the core adds an
# enumerant here, not a method, a client stub and a server handler.
#
# Rules the server enforces (and clients must follow):
#   * every write (put, delete, cas) carries the clientId returned by openSession and a
#     requestId strictly increasing per client, starting at 1; a retry reuses the same
#     (clientId, requestId) and is applied at most once;
#   * reads (get, range) are linearizable unless `stale` is true, in which case the node
#     answers from its local state;
#   * oversized keys or values are answered with status tooLarge, malformed requests with
#     status invalid, each with a human readable `error`.
@0xa234aadc4beb4d8d;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("kvr::schema");

# Same ordinals as kvr::OpType.
enum OpType {
  put @0;
  get @1;
  delete @2;
  cas @3;          # compare-and-swap: expected value, or expected absence
  range @4;        # ordered scan [key, rangeEnd) with a limit
  openSession @5;  # registers a client; the reply's clientId is its session id
}

# Same ordinals as kvr::Status.
enum Status {
  ok @0;
  notFound @1;
  casMismatch @2;
  notLeader @3;           # not applied; retry at leaderAddr / leaderHint (0 = unknown)
  timeout @4;             # outcome unknown: retry with the same requestId
  tooLarge @5;
  sessionExpired @6;
  busy @7;
  invalid @8;
  staleRequest @9;
  shuttingDown @10;
  transferInProgress @11;
}

struct KeyValue {
  key @0 :Data;
  value @1 :Data;
}

# kvr::KvCommand.
struct Command {
  op @0 :OpType;
  clientId @1 :UInt64;     # writes: session id from openSession
  requestId @2 :UInt64;    # writes: strictly increasing per client, from 1
  key @3 :Data;
  value @4 :Data;          # put / cas new value
  expected @5 :Data;       # cas expected value
  expectAbsent @6 :Bool;   # cas: succeed only if the key is absent
  rangeEnd @7 :Data;       # range: exclusive end; empty = unbounded
  limit @8 :UInt32;        # range: max pairs (0 = server maximum)
}

# kvr::KvReply plus a human readable explanation of a non-ok status.
struct Reply {
  status @0 :Status;
  error @1 :Text;          # empty when status is ok
  leaderHint @2 :UInt32;   # the leader as this node knows it; 0 = unknown
  index @3 :UInt64;        # log index at which a write applied / a read was served
  value @4 :Data;          # get: the value; cas mismatch: the current value
  kvs @5 :List(KeyValue);  # range
  more @6 :Bool;           # range: stopped at the limit
  clientId @7 :UInt64;     # openSession: the new session id
  leaderAddr @8 :Text;     # notLeader: the leader's client address (HOST:PORT) as the
                           # leader advertised it to this node; empty = unknown
}

# One command of a batch (KvService.callBatch) and whether it may be read stale.
struct BatchItem {
  command @0 :Command;
  stale @1 :Bool;          # reads only: answer from this node's local state
}

struct NodeStatus {
  id @0 :UInt32;
  role @1 :Text;           # "follower", "precandidate", "candidate" or "leader"
  term @2 :UInt64;
  leader @3 :UInt32;       # 0 = unknown
  commit @4 :UInt64;
  applied @5 :UInt64;
  lastIndex @6 :UInt64;
  snapshotIndex @7 :UInt64;
  clientAddr @8 :Text;     # the client address this node advertises to its peers
  leaderAddr @9 :Text;     # the leader's client address; empty = unknown
  recovering @10 :Bool;    # repairing storage damage from the leader: does not vote
  recoverUntil @11 :UInt64;  # ... until its log matches the leader's up to here
}

# Backup (kvctl snapshot save): what the served snapshot is.
struct SnapshotInfo {
  clusterId @0 :UInt64;
  nodeId @1 :UInt32;       # the node that serves it
  index @2 :UInt64;        # the KV state is exactly the state after this log index
  term @3 :UInt64;         # term of the entry at that index
  size @4 :UInt64;         # bytes of the KV snapshot (core/kv.cc format)
}

# One snapshot held by the server for one client, read in bounded chunks. Dropping the
# capability (or the connection) frees it.
interface SnapshotStream {
  # Up to maxBytes (at most 1 MiB) from offset; fewer only at the end, none past it.
  read @0 (offset :UInt64, maxBytes :UInt32) -> (data :Data);
}

# Membership and leadership (kvctl member ..., kvctl leader transfer). Every op is
# answered by the leader: a follower answers notLeader with the leader's address, like a
# write. A change is answered ok once its Config entry is committed and applied at the
# leader; a bad one is answered invalid, changing nothing, with the reason in
# reply.error (core/membership.h confChangeErrorText) and its code in confError.
enum AdminOp {
  memberList @0;
  memberAdd @1;       # as a learner: id, raftAddr, clientAddr
  memberPromote @2;   # a caught-up learner becomes a voter: id
  memberRemove @3;    # id
  leaderTransfer @4;  # id: answered once that voter leads (or timeout)
}

struct AdminRequest {
  op @0 :AdminOp;
  id @1 :UInt32;
  raftAddr @2 :Text;
  clientAddr @3 :Text;
}

struct Member {
  id @0 :UInt32;
  raftAddr @1 :Text;
  clientAddr @2 :Text;     # from the configuration, else as the member advertised it
  voter @3 :Bool;          # false: a learner
  match @4 :UInt64;        # the leader's view of the member's log (the leader: its last index)
  leader @5 :Bool;
}

interface KvService {
  # Runs one operation. Failures are reported in reply.status / reply.error, never as
  # an RPC exception, so clients handle one shape of answer.
  call @0 (command :Command, stale :Bool) -> (reply :Reply);

  # Runs many independent operations in one round trip (the client library coalesces
  # what is pending on one connection into one of these). replies[i] answers items[i],
  # exactly as `call` would have answered it alone: same statuses, same errors, same
  # session rules (each write carries its own clientId/requestId; a retried batch is
  # deduplicated member by member). The node hands the whole batch to the replica at
  # once, so its writes share one log append and one fsync and its linearizable reads
  # one leadership check. Items are handed to the replica in list order, but nothing
  # waits for one item before the next is submitted.
  # A batch of more than kMaxBatchCommands items or kMaxBatchBytes bytes
  # (core/limits.h) is refused as a whole, none of it runs: `replies` is empty and
  # `refused` says why (status tooLarge and a sentence naming the limit); otherwise
  # `refused` is unset. The reply is sent once every item is answered.
  callBatch @4 (items :List(BatchItem)) -> (replies :List(Reply), refused :Reply);

  # What this node knows about itself and the cluster (for kvctl and tests).
  status @1 () -> (status :NodeStatus);

  # A consistent, linearizable copy of the whole KV state: the node first confirms a
  # read index (as for a linearizable get; a follower asks the leader), then copies its
  # state once it has applied that index, so the copy holds every write acknowledged
  # before the call. reply.status is ok (then info and stream are set), or why not
  # (notLeader with a hint, timeout, busy: too many snapshots open, shuttingDown).
  snapshot @2 () -> (reply :Reply, info :SnapshotInfo, stream :SnapshotStream);

  # Membership and leadership (AdminOp). On ok (and on invalid) `members` is the
  # configuration in force at the leader afterwards, `clusterId` the cluster's id and
  # `confIndex` its Config entry (0: the initial configuration); `confCommitted` says
  # whether that entry is committed. `confError` is the kvr::ConfChangeError ordinal.
  admin @3 (request :AdminRequest)
      -> (reply :Reply, members :List(Member), clusterId :UInt64, confIndex :UInt64,
          confCommitted :Bool, confError :UInt8);
}

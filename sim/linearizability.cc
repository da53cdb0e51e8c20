#include "sim/linearizability.h"

#include <kj/debug.h>

#include <algorithm>
#include <limits>
#include <map>
#include <optional>
#include <string_view>
#include <unordered_set>
#include <utility>

#include "core/text.h"

namespace kvr::sim {

const char* verdictName(Verdict v) {
  switch (v) {
    case Verdict::Linearizable: return "linearizable";
    case Verdict::NotLinearizable: return "not linearizable";
    case Verdict::Unknown: return "unknown (search budget exhausted)";
  }
  return "?";
}

namespace {

// Register values are interned per key. Only values some operation compares against (a
// get's result, a cas's expectation) need their own id; all other written values behave
// identically in the model, so they share one id, which keeps the search small.
constexpr uint32_t kAbsent = 0;
constexpr uint32_t kUnreadValue = 1;
constexpr uint64_t kNever = std::numeric_limits<uint64_t>::max();

struct KeyOp {
  History::OpId id = 0;
  OpKind kind = OpKind::Get;
  bool definite = false;      // outcome Ok: must take effect; otherwise Unknown: may
  bool succeeded = false;     // get: read a value; delete: key existed; cas: swapped
  uint32_t value = kAbsent;   // put/cas: new value; get that read: the value read
  uint32_t expect = kAbsent;  // cas: expected value (kAbsent = expects absence)
  uint64_t invoke = 0;
  uint64_t complete = kNever;  // kNever for unknown outcomes
};

// Applies `op` to a register holding `state`. Returns false if the op's recorded result
// cannot happen in that state.
bool applyOp(const KeyOp& op, uint32_t state, uint32_t* next) {
  *next = state;
  switch (op.kind) {
    case OpKind::Put: *next = op.value; return true;
    case OpKind::Get:
      KJ_ASSERT(op.definite, "unknown gets are dropped before the search");
      return op.succeeded ? state == op.value : state == kAbsent;
    case OpKind::Delete:
      if (!op.definite) {
        *next = kAbsent;
        return true;
      }
      if (op.succeeded != (state != kAbsent)) return false;
      *next = kAbsent;
      return true;
    case OpKind::Cas:
      // An unknown cas whose expectation fails is a no-op: the same as leaving it out.
      if (!op.definite || op.succeeded) {
        if (state != op.expect) return false;
        *next = op.value;
        return true;
      }
      return state != op.expect;
  }
  return false;
}

// A completed op that never changes the register, whatever it holds.
bool isPureRead(const KeyOp& op) {
  if (!op.definite) return false;
  return op.kind == OpKind::Get ||
         ((op.kind == OpKind::Cas || op.kind == OpKind::Delete) && !op.succeeded);
}

// The register value a completed op needs to see, if it needs one exact value.
std::optional<uint32_t> requiredValue(const KeyOp& op) {
  if (!op.definite) return std::nullopt;
  switch (op.kind) {
    case OpKind::Put: return std::nullopt;
    case OpKind::Get: return op.succeeded ? op.value : kAbsent;
    case OpKind::Delete: return op.succeeded ? std::nullopt : std::optional<uint32_t>(kAbsent);
    case OpKind::Cas: return op.succeeded ? std::optional<uint32_t>(op.expect) : std::nullopt;
  }
  return std::nullopt;
}

// The register value an op may leave behind when it takes effect, if it can change it.
std::optional<uint32_t> producedValue(const KeyOp& op) {
  switch (op.kind) {
    case OpKind::Put: return op.value;
    case OpKind::Get: return std::nullopt;
    case OpKind::Delete:
      return !op.definite || op.succeeded ? std::optional<uint32_t>(kAbsent) : std::nullopt;
    case OpKind::Cas:
      return !op.definite || op.succeeded ? std::optional<uint32_t>(op.value) : std::nullopt;
  }
  return std::nullopt;
}

uint64_t mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// Where the search of one key got furthest: the most completed ops placed.
struct DeepestPoint {
  size_t placedDefinite = 0;
  size_t definiteTotal = 0;
  uint32_t state = kAbsent;
  std::optional<uint32_t> stateSetBy;  // the placed op that last wrote the register
  std::vector<uint32_t> recent;        // last placed ops (local indices), oldest first
  std::vector<uint32_t> candidates;    // ops that were eligible to go next
  std::optional<uint32_t> blocker;     // the unplaced completed op that completes first
};

// The WGL/Lowe search for one key's operations, with three prunings that keep it exact:
//  - memo: a (placed set, register value) pair already explored is a dead end;
//  - pure reads first: a completed op that cannot change the register (get, cas
//    mismatch, delete of an absent key) and is legal now is placed at once, with no
//    alternatives tried -- moving it earlier in any valid order keeps that order valid;
//  - doomed values: once the register leaves value v, if an unplaced completed op needs
//    to see v and no unplaced op that could write v again is invoked before that op
//    completes, nothing below this point can succeed.
class KeySearch {
 public:
  // `ops` must be sorted by invocation time and outlive the search.
  KeySearch(const std::vector<KeyOp>& ops, uint64_t maxSteps, uint64_t maxMemoWords)
      : ops_(ops),
        n_(static_cast<uint32_t>(ops.size())),
        maxSteps_(maxSteps),
        memoWordsLeft_(maxMemoWords),
        words_((ops.size() + 63) / 64),
        stride_(words_ + 2),
        memo_(64, SlotHash{&arena_, stride_}, SlotEq{&arena_, stride_}) {
    KJ_REQUIRE(ops.size() < std::numeric_limits<uint32_t>::max());
    for (size_t i = 1; i < ops.size(); ++i) KJ_ASSERT(ops[i - 1].invoke <= ops[i].invoke);
    bits_.assign(words_, 0);
    zobrist_.resize(n_);
    for (uint32_t i = 0; i < n_; ++i) zobrist_[i] = mix64(i * 0x2545f4914f6cdd1dull + 7);

    uint32_t values = kUnreadValue + 1;
    for (const KeyOp& op : ops_) values = std::max({values, op.value + 1, op.expect + 1});
    readers_.resize(values);
    writers_.resize(values);
    for (uint32_t i = 0; i < n_; ++i) {
      if (std::optional<uint32_t> v = requiredValue(ops_[i])) readers_[*v].push_back(i);
      if (std::optional<uint32_t> v = producedValue(ops_[i])) writers_[*v].push_back(i);
    }
    for (auto& r : readers_) {  // by deadline; writers_ are already in invocation order
      std::stable_sort(r.begin(), r.end(), [&](uint32_t a, uint32_t b) {
        return ops_[a].complete < ops_[b].complete;
      });
    }
    firstReader_.assign(values, 0);
    firstWriter_.assign(values, 0);

    // Completed ops: one list in invocation order, one in completion order.
    inext_.assign(n_ + 1, n_);
    iprev_.assign(n_ + 1, n_);
    cnext_.assign(n_ + 1, n_);
    cprev_.assign(n_ + 1, n_);
    std::vector<uint32_t> byComplete;
    uint32_t last = n_;
    for (uint32_t i = 0; i < n_; ++i) {
      if (!ops_[i].definite) continue;
      inext_[last] = i;
      iprev_[i] = last;
      last = i;
      byComplete.push_back(i);
    }
    inext_[last] = n_;
    iprev_[n_] = last;
    std::stable_sort(byComplete.begin(), byComplete.end(), [&](uint32_t a, uint32_t b) {
      return ops_[a].complete < ops_[b].complete;
    });
    last = n_;
    for (uint32_t i : byComplete) {
      cnext_[last] = i;
      cprev_[i] = last;
      last = i;
    }
    cnext_[last] = n_;
    cprev_[n_] = last;
    definiteLeft_ = byComplete.size();
    definiteTotal_ = byComplete.size();

    // Unknown ops with the same effect are interchangeable (none has a deadline), so
    // only the earliest-invoked unplaced one of each class is ever tried.
    std::map<std::tuple<uint8_t, uint32_t, uint32_t>, uint32_t> classIds;
    classOf_.assign(n_, 0);
    for (uint32_t i = 0; i < n_; ++i) {
      if (ops_[i].definite) continue;
      auto key = std::make_tuple(static_cast<uint8_t>(ops_[i].kind), ops_[i].value,
                                 ops_[i].expect);
      auto [it, inserted] = classIds.emplace(key, static_cast<uint32_t>(classes_.size()));
      if (inserted) classes_.emplace_back();
      classes_[it->second].push_back(i);
      classOf_[i] = it->second;
    }
    classNext_.assign(classes_.size(), 0);
  }

  Verdict run() {
    pushNode();
    while (true) {
      if (definiteLeft_ == 0) return Verdict::Linearizable;
      Node& node = nodes_.back();
      if (node.cursor == node.end) {
        candidates_.resize(node.begin);
        nodes_.pop_back();
        if (nodes_.empty()) return Verdict::NotLinearizable;
        undoLast();
        continue;
      }
      uint32_t o = candidates_[node.cursor++];
      if (++steps_ > maxSteps_) return Verdict::Unknown;
      uint32_t next;
      if (!applyOp(ops_[o], state_, &next)) continue;
      // Placing an unknown op that changes nothing only uses it up: leaving it for
      // later (or out) is always at least as good.
      if (!ops_[o].definite && next == state_) continue;
      uint32_t before = state_;
      place(o, next);
      bool doomed = next != before && isDoomed(before);
      if (doomed || !rememberState()) {  // hopeless, or explored before
        undoLast();
        continue;
      }
      pushNode();
    }
  }

  uint64_t steps() const { return std::min(steps_, maxSteps_); }
  const DeepestPoint& deepest() const { return deepest_; }

 private:
  struct Node {
    size_t begin, end, cursor;  // this node's slice of candidates_
  };
  struct Placed {
    uint32_t op;
    uint32_t stateBefore;
    uint32_t firstReaderBefore;  // of the value the op requires, if any
    uint32_t firstWriterBefore;  // of the value the op produces, if any
  };

  // The memo stores each visited (placed set, state) in arena_ as one slot of stride_
  // words: [hash, state, bitset...]; the hash set holds slot numbers.
  struct SlotHash {
    const std::vector<uint64_t>* arena;
    size_t stride;
    size_t operator()(uint32_t slot) const { return (*arena)[slot * stride]; }
  };
  struct SlotEq {
    const std::vector<uint64_t>* arena;
    size_t stride;
    bool operator()(uint32_t a, uint32_t b) const {
      const uint64_t* pa = arena->data() + a * stride;
      const uint64_t* pb = arena->data() + b * stride;
      return std::equal(pa, pa + stride, pb);
    }
  };

  bool isPlaced(uint32_t o) const { return (bits_[o / 64] >> (o % 64)) & 1; }

  // Value v is doomed when the register does not hold it, some unplaced completed op
  // must still see it, and no unplaced op that could write it is invoked before the
  // first of those ops completes.
  bool isDoomed(uint32_t v) const {
    if (v == state_ || firstReader_[v] == readers_[v].size()) return false;
    uint64_t deadline = ops_[readers_[v][firstReader_[v]]].complete;
    return firstWriter_[v] == writers_[v].size() ||
           ops_[writers_[v][firstWriter_[v]]].invoke > deadline;
  }

  // Moves the value's first-unplaced pointers past placed ops (after o was placed).
  void advanceFirsts(const KeyOp& op) {
    if (std::optional<uint32_t> v = requiredValue(op)) {
      while (firstReader_[*v] < readers_[*v].size() &&
             isPlaced(readers_[*v][firstReader_[*v]])) {
        ++firstReader_[*v];
      }
    }
    if (std::optional<uint32_t> v = producedValue(op)) {
      while (firstWriter_[*v] < writers_[*v].size() &&
             isPlaced(writers_[*v][firstWriter_[*v]])) {
        ++firstWriter_[*v];
      }
    }
  }

  void flipBit(uint32_t o) {
    bits_[o / 64] ^= uint64_t(1) << (o % 64);
    bitsHash_ ^= zobrist_[o];
  }

  // Returns false if (bits_, state_) was visited before; otherwise remembers it (while
  // memory allows) and returns true.
  bool rememberState() {
    size_t slot = arena_.size() / stride_;
    KJ_ASSERT(slot < std::numeric_limits<uint32_t>::max());
    arena_.push_back(bitsHash_ ^ mix64(state_));
    arena_.push_back(state_);
    arena_.insert(arena_.end(), bits_.begin(), bits_.end());
    if (memo_.find(static_cast<uint32_t>(slot)) != memo_.end()) {
      arena_.resize(arena_.size() - stride_);
      return false;
    }
    if (memoWordsLeft_ < stride_) {
      arena_.resize(arena_.size() - stride_);
      return true;
    }
    memoWordsLeft_ -= stride_;
    memo_.insert(static_cast<uint32_t>(slot));
    return true;
  }

  void place(uint32_t o, uint32_t next) {
    std::optional<uint32_t> rv = requiredValue(ops_[o]);
    std::optional<uint32_t> pv = producedValue(ops_[o]);
    path_.push_back({o, state_, rv ? firstReader_[*rv] : 0, pv ? firstWriter_[*pv] : 0});
    state_ = next;
    flipBit(o);
    advanceFirsts(ops_[o]);
    if (ops_[o].definite) {
      inext_[iprev_[o]] = inext_[o];
      iprev_[inext_[o]] = iprev_[o];
      cnext_[cprev_[o]] = cnext_[o];
      cprev_[cnext_[o]] = cprev_[o];
      --definiteLeft_;
    } else {
      KJ_ASSERT(classes_[classOf_[o]][classNext_[classOf_[o]]] == o);
      ++classNext_[classOf_[o]];
    }
  }

  void undoLast() {
    Placed p = path_.back();
    path_.pop_back();
    uint32_t o = p.op;
    if (ops_[o].definite) {  // dancing links: relink in reverse order of removal
      inext_[iprev_[o]] = o;
      iprev_[inext_[o]] = o;
      cnext_[cprev_[o]] = o;
      cprev_[cnext_[o]] = o;
      ++definiteLeft_;
    } else {
      --classNext_[classOf_[o]];
    }
    if (std::optional<uint32_t> rv = requiredValue(ops_[o]))
      firstReader_[*rv] = p.firstReaderBefore;
    if (std::optional<uint32_t> pv = producedValue(ops_[o]))
      firstWriter_[*pv] = p.firstWriterBefore;
    flipBit(o);
    state_ = p.stateBefore;
  }

  // Opens a search node: every op that may take effect next -- completed ones first (in
  // invocation order), then one representative per unknown class -- or just one pure
  // read when one is legal now.
  void pushNode() {
    size_t begin = candidates_.size();
    if (definiteLeft_ > 0) {
      uint64_t deadline = ops_[cnext_[n_]].complete;  // earliest unplaced completion
      bool forced = false;
      for (uint32_t o = inext_[n_]; o != n_ && ops_[o].invoke <= deadline; o = inext_[o]) {
        uint32_t next;
        if (isPureRead(ops_[o]) && applyOp(ops_[o], state_, &next)) {
          candidates_.resize(begin);
          candidates_.push_back(o);
          forced = true;
          break;
        }
        candidates_.push_back(o);
      }
      size_t definiteEnd = candidates_.size();
      for (size_t c = 0; !forced && c < classes_.size(); ++c) {
        if (classNext_[c] >= classes_[c].size()) continue;
        uint32_t u = classes_[c][classNext_[c]];
        if (ops_[u].invoke <= deadline && enablesSomething(u, begin, definiteEnd, deadline)) {
          candidates_.push_back(u);
        }
      }
    }
    nodes_.push_back({begin, candidates_.size(), begin});
    size_t placed = definiteTotal_ - definiteLeft_;
    if (!haveDeepest_ || placed > deepest_.placedDefinite) recordDeepest(begin, placed);
  }

  // Whether placing unknown op `u` now lets some eligible op go that cannot go in the
  // current state. Only such placements are tried: in any valid order, an unknown op
  // followed by an op that did not need it can be dropped (if that op changes the
  // register) or swapped behind it (if it is a pure read, legal either way), so some
  // valid order places every unknown op right before an op it enables.
  bool enablesSomething(uint32_t u, size_t definiteBegin, size_t definiteEnd,
                        uint64_t deadline) const {
    uint32_t v;
    if (!applyOp(ops_[u], state_, &v) || v == state_) return false;
    for (size_t i = definiteBegin; i < definiteEnd; ++i) {
      uint32_t ignored;
      const KeyOp& f = ops_[candidates_[i]];
      if (!applyOp(f, state_, &ignored) && applyOp(f, v, &ignored)) return true;
    }
    // Among unknown ops only a cas can be illegal in one state and legal in another.
    for (size_t c = 0; c < classes_.size(); ++c) {
      if (c == classOf_[u] || classNext_[c] >= classes_[c].size()) continue;
      const KeyOp& f = ops_[classes_[c][classNext_[c]]];
      if (f.kind == OpKind::Cas && f.expect == v && f.invoke <= deadline) return true;
    }
    return false;
  }

  void recordDeepest(size_t candidatesBegin, size_t placed) {
    haveDeepest_ = true;
    deepest_.placedDefinite = placed;
    deepest_.definiteTotal = definiteTotal_;
    deepest_.state = state_;
    deepest_.stateSetBy.reset();
    for (size_t i = path_.size(); i-- > 0;) {
      if (producedValue(ops_[path_[i].op])) {
        deepest_.stateSetBy = path_[i].op;
        break;
      }
    }
    deepest_.recent.clear();
    size_t from = path_.size() > kRecentShown ? path_.size() - kRecentShown : 0;
    for (size_t i = from; i < path_.size(); ++i) deepest_.recent.push_back(path_[i].op);
    deepest_.candidates.assign(candidates_.begin() + static_cast<ptrdiff_t>(candidatesBegin),
                               candidates_.end());
    deepest_.blocker.reset();
    if (definiteLeft_ > 0) deepest_.blocker = cnext_[n_];
  }

  static constexpr size_t kRecentShown = 6;

  const std::vector<KeyOp>& ops_;
  const uint32_t n_;
  const uint64_t maxSteps_;
  uint64_t steps_ = 0;
  uint64_t memoWordsLeft_;
  const size_t words_;
  const size_t stride_;

  std::vector<uint64_t> bits_;
  std::vector<uint64_t> zobrist_;
  uint64_t bitsHash_ = 0;
  uint32_t state_ = kAbsent;

  // Per value id: the completed ops that must see it, by completion; the ops that may
  // write it, by invocation; and the index of the first unplaced one in each.
  std::vector<std::vector<uint32_t>> readers_;
  std::vector<std::vector<uint32_t>> writers_;
  std::vector<uint32_t> firstReader_;
  std::vector<uint32_t> firstWriter_;

  std::vector<uint32_t> inext_, iprev_, cnext_, cprev_;
  size_t definiteLeft_ = 0;
  size_t definiteTotal_ = 0;
  std::vector<std::vector<uint32_t>> classes_;
  std::vector<uint32_t> classOf_;
  std::vector<size_t> classNext_;

  std::vector<Node> nodes_;
  std::vector<uint32_t> candidates_;
  std::vector<Placed> path_;

  std::vector<uint64_t> arena_;
  std::unordered_set<uint32_t, SlotHash, SlotEq> memo_;  // lookups only, never iterated

  bool haveDeepest_ = false;
  DeepestPoint deepest_;
};

// Gives every value no op compares against the shared id kUnreadValue (see above).
void mergeUnreadValues(std::vector<KeyOp>* ops) {
  std::vector<bool> compared;
  auto mark = [&](uint32_t v) {
    if (v >= compared.size()) compared.resize(v + 1, false);
    compared[v] = true;
  };
  for (const KeyOp& op : *ops) {
    if (op.kind == OpKind::Get && op.definite && op.succeeded) mark(op.value);
    if (op.kind == OpKind::Cas) mark(op.expect);
  }
  auto remap = [&](uint32_t v) {
    return v == kAbsent || (v < compared.size() && compared[v]) ? v : kUnreadValue;
  };
  for (KeyOp& op : *ops) {
    if (op.kind == OpKind::Put || op.kind == OpKind::Cas) op.value = remap(op.value);
  }
}

// One key's operations, ready for the search, with the names behind the value ids.
struct KeyHistory {
  std::string_view key;
  std::vector<KeyOp> ops;               // sorted by invocation time
  std::vector<std::string> valueNames;  // by value id, for explanations
};

KeyHistory buildKeyHistory(const History& history, std::string_view key,
                           const std::vector<History::OpId>& ids) {
  KeyHistory kh;
  kh.key = key;
  std::map<std::string_view, uint32_t> valueIds;
  kh.valueNames = {"<absent>", "<a value no operation reads>"};
  auto idOf = [&](std::string_view v) {
    auto [it, inserted] = valueIds.emplace(v, static_cast<uint32_t>(kh.valueNames.size()));
    if (inserted) kh.valueNames.emplace_back(v);
    return it->second;
  };
  for (History::OpId id : ids) {
    const Operation& op = history.op(id);
    if (op.outcome == Outcome::Fail) continue;                             // never applied
    if (op.outcome == Outcome::Unknown && op.op == OpKind::Get) continue;  // observed nothing
    KeyOp k;
    k.id = id;
    k.kind = op.op;
    k.definite = op.outcome == Outcome::Ok;
    k.invoke = op.invokeNs;
    k.complete = k.definite ? *op.completeNs : kNever;
    switch (op.op) {
      case OpKind::Put: k.value = idOf(op.value); break;
      case OpKind::Get:
        k.succeeded = op.found;
        if (op.found) k.value = idOf(op.output);
        break;
      case OpKind::Delete: k.succeeded = op.found; break;
      case OpKind::Cas:
        k.succeeded = k.definite && op.output == kOutputOk;
        k.value = idOf(op.value);
        k.expect = op.expectAbsent ? kAbsent : idOf(op.expected);
        break;
    }
    kh.ops.push_back(k);
  }
  std::stable_sort(kh.ops.begin(), kh.ops.end(),
                   [](const KeyOp& a, const KeyOp& b) { return a.invoke < b.invoke; });
  mergeUnreadValues(&kh.ops);
  return kh;
}

// Cheap test before searching: an op that needs to see a value (not absence) that no
// op could have written by the time it completed. Returns the index of such an op.
std::optional<size_t> findImpossibleRead(const KeyHistory& kh) {
  std::map<uint32_t, uint64_t> earliestWrite;  // value id -> earliest invoke of a writer
  for (const KeyOp& op : kh.ops) {
    if (std::optional<uint32_t> v = producedValue(op)) earliestWrite.emplace(*v, op.invoke);
  }
  for (size_t i = 0; i < kh.ops.size(); ++i) {
    std::optional<uint32_t> v = requiredValue(kh.ops[i]);
    if (!v || *v == kAbsent) continue;
    auto it = earliestWrite.find(*v);
    if (it == earliestWrite.end() || it->second > kh.ops[i].complete) return i;
  }
  return std::nullopt;
}

// A weaker history: the chosen completed ops that only read (gets, cas mismatches,
// deletes of absent keys) dropped, the other chosen ones made unknown (free to take
// effect at any time after their invocation, or not at all). Anything the original
// allows, this allows too, so if this is not linearizable neither is the original.
std::vector<KeyOp> weakened(const std::vector<KeyOp>& ops, const std::vector<bool>& weak) {
  std::vector<KeyOp> out;
  out.reserve(ops.size());
  for (size_t i = 0; i < ops.size(); ++i) {
    if (!weak[i]) {
      out.push_back(ops[i]);
    } else if (!isPureRead(ops[i])) {
      KeyOp k = ops[i];
      k.definite = false;
      k.succeeded = false;
      k.complete = kNever;
      out.push_back(k);
    }
  }
  mergeUnreadValues(&out);
  return out;
}

// Shrinks the set of completed ops behind a violation (delta debugging over weakening:
// try weakening blocks, then single ops, keep each weakening after which the history is
// still not linearizable; a trial whose search runs out of steps counts as "no"). Returns
// the per-op weak flags; *minimal says whether no single remaining completed op can be
// weakened (false if some search ran out of steps).
std::vector<bool> minimizeViolation(const std::vector<KeyOp>& ops,
                                    const LinearizabilityOptions& opt, bool* minimal) {
  std::vector<bool> weak(ops.size(), false);
  uint64_t stepsLeft = opt.maxMinimizeSteps;
  bool exhaustive = true;
  auto stillFails = [&](const std::vector<bool>& trialWeak) {
    std::vector<KeyOp> trial = weakened(ops, trialWeak);
    KeySearch search(trial, std::min(stepsLeft, opt.maxMinimizeTrialSteps), opt.maxMemoWords);
    Verdict v = search.run();
    stepsLeft -= std::min(stepsLeft, search.steps());
    if (v == Verdict::Unknown) exhaustive = false;
    return v == Verdict::NotLinearizable;
  };
  auto strongOps = [&] {
    std::vector<size_t> out;
    for (size_t i = 0; i < ops.size(); ++i) {
      if (ops[i].definite && !weak[i]) out.push_back(i);
    }
    return out;
  };
  size_t chunk = std::max<size_t>(strongOps().size() / 2, 1);
  *minimal = false;
  while (stepsLeft > 0) {
    bool changed = false;
    std::vector<size_t> strong = strongOps();
    for (size_t from = 0; from < strong.size() && stepsLeft > 0; from += chunk) {
      std::vector<bool> trial = weak;
      for (size_t j = from; j < std::min(strong.size(), from + chunk); ++j)
        trial[strong[j]] = true;
      if (stillFails(trial)) {
        weak = std::move(trial);
        changed = true;
      }
    }
    if (chunk > 1) {
      chunk /= 2;
    } else if (!changed) {
      *minimal = exhaustive && stepsLeft > 0;
      break;
    }
  }
  return weak;
}

std::string quoted(std::string_view s) { return text::quoted(s, text::Quote::Human); }

constexpr size_t kMaxOpsListed = 40;

void explainViolation(const History& history, const KeyHistory& kh,
                      const std::vector<KeyOp>& failing, bool minimal,
                      const LinearizabilityOptions& opt, LinearizabilityResult* result) {
  result->verdict = Verdict::NotLinearizable;
  result->key = std::string(kh.key);
  std::string& e = result->explanation;
  e = "key " + quoted(kh.key) + " is not linearizable.\n";

  // Re-search the failing set alone, to say where it gets stuck.
  KeySearch search(failing, opt.maxSteps, opt.maxMemoWords);
  Verdict v = search.run();
  KJ_ASSERT(v != Verdict::Linearizable, "a failing subset turned out linearizable");
  const DeepestPoint& d = search.deepest();

  // The completed ops that remain, and the uncertain writes of values they read.
  std::vector<History::OpId> listed;
  std::vector<bool> readValue;
  size_t core = 0;
  for (const KeyOp& op : failing) {
    if (!op.definite) continue;
    listed.push_back(op.id);
    ++core;
    if (std::optional<uint32_t> r = requiredValue(op); r && *r != kAbsent) {
      if (*r >= readValue.size()) readValue.resize(*r + 1, false);
      readValue[*r] = true;
    }
  }
  size_t uncertain = 0;
  for (const KeyOp& op : failing) {
    if (op.definite) continue;
    std::optional<uint32_t> w = producedValue(op);
    if (w && *w != kAbsent && *w < readValue.size() && readValue[*w]) {
      listed.push_back(op.id);
    } else {
      ++uncertain;
    }
  }
  if (listed.size() > kMaxOpsListed) {  // too many to read: show where it got stuck
    listed.clear();
    for (uint32_t i : d.recent) listed.push_back(failing[i].id);
    for (uint32_t i : d.candidates) listed.push_back(failing[i].id);
    if (d.blocker) listed.push_back(failing[*d.blocker].id);
    e += "Operations around where every ordering gets stuck (" + std::to_string(core) +
         " completed ops of " + std::to_string(kh.ops.size()) + " are involved):\n";
  } else {
    e += std::string(minimal ? "A minimal set" : "A set") + " of " + std::to_string(core) +
         " completed ops (of " + std::to_string(kh.ops.size()) +
         " on this key) that no order explains, even if every other write on the key took "
         "effect at any time after its invocation or not at all";
    e += uncertain > 0 ? " (" + std::to_string(uncertain) + " such writes not shown):\n"
                       : ":\n";
  }
  std::sort(listed.begin(), listed.end(), [&](History::OpId a, History::OpId b) {
    return std::make_pair(history.op(a).invokeNs, a) <
           std::make_pair(history.op(b).invokeNs, b);
  });
  listed.erase(std::unique(listed.begin(), listed.end()), listed.end());
  for (History::OpId id : listed) {
    e += "  #" + std::to_string(id) + " " + describeOperation(history.op(id)) + "\n";
  }
  result->ops = std::move(listed);

  if (v == Verdict::Unknown) return;  // no trustworthy account of where it got stuck
  std::string held;
  if (d.state == kAbsent) {
    held = "nothing";
  } else if (d.stateSetBy) {
    History::OpId w = failing[*d.stateSetBy].id;
    held = quoted(history.op(w).value) + " (written by #" + std::to_string(w) + ")";
  } else {
    held = quoted(kh.valueNames[d.state]);
  }
  e += "The furthest any order gets is " + std::to_string(d.placedDefinite) + " of " +
       std::to_string(d.definiteTotal) + " completed ops, with the key then holding " + held +
       ".\n";
  if (!d.recent.empty()) {
    e += "  last placed:";
    for (uint32_t i : d.recent) e += " #" + std::to_string(failing[i].id);
    e += "\n";
  }
  if (d.blocker) {
    e += "  next to complete is #" + std::to_string(failing[*d.blocker].id) +
         ", and every op that could go next leads to a dead end:";
    for (uint32_t i : d.candidates) e += " #" + std::to_string(failing[i].id);
    e += "\n";
  }
}

}  // namespace

LinearizabilityResult checkLinearizability(const History& history,
                                           const LinearizabilityOptions& options) {
  LinearizabilityResult result;
  std::map<std::string_view, std::vector<History::OpId>> idsByKey;
  for (History::OpId id = 0; id < history.size(); ++id) {
    const Operation& op = history.op(id);
    std::string why;
    KJ_REQUIRE(validateOperation(op, &why), "malformed operation in history", id, why);
    idsByKey[op.key].push_back(id);
  }

  std::vector<KeyHistory> keys;
  keys.reserve(idsByKey.size());
  for (const auto& [key, ids] : idsByKey) keys.push_back(buildKeyHistory(history, key, ids));

  // Cheap, definite violations first, so they are found even if a search runs out.
  for (const KeyHistory& kh : keys) {
    if (std::optional<size_t> bad = findImpossibleRead(kh)) {
      const KeyOp& op = kh.ops[*bad];
      result.verdict = Verdict::NotLinearizable;
      result.key = std::string(kh.key);
      result.ops = {op.id};
      result.explanation = "key " + quoted(kh.key) + " is not linearizable:\n  #" +
                           std::to_string(op.id) + " " + describeOperation(history.op(op.id)) +
                           "\nsaw a value that no put or cas on this key (other than failed "
                           "ones) was invoked to write before it completed.\n";
      return result;
    }
  }

  uint64_t stepsLeft = options.maxSteps;
  for (const KeyHistory& kh : keys) {
    KeySearch search(kh.ops, stepsLeft, options.maxMemoWords);
    Verdict v = search.run();
    result.steps += search.steps();
    stepsLeft -= std::min(stepsLeft, search.steps());
    if (v == Verdict::Linearizable) {
      ++result.keysChecked;
      continue;
    }
    if (v == Verdict::Unknown) {
      result.verdict = Verdict::Unknown;
      result.key = std::string(kh.key);
      result.explanation = "search budget of " + std::to_string(options.maxSteps) +
                           " steps ran out on key " + quoted(kh.key) + " (" +
                           std::to_string(kh.ops.size()) + " ops) after " +
                           std::to_string(result.keysChecked) + " of " +
                           std::to_string(keys.size()) +
                           " keys were decided; verdict unknown.\n";
      return result;
    }
    ++result.keysChecked;
    std::vector<KeyOp> failing = kh.ops;
    bool minimal = false;
    if (options.minimize) {
      std::vector<bool> weak = minimizeViolation(kh.ops, options, &minimal);
      failing = weakened(kh.ops, weak);
    }
    explainViolation(history, kh, failing, minimal, options, &result);
    return result;
  }
  return result;
}

}  // namespace kvr::sim

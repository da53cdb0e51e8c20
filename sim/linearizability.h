// Linearizability checker for client histories (sim/history.h) of the KV store.
//
// Model: one register per key, holding either nothing or a value. Every operation
// touches one key, and a history is linearizable iff each key's sub-history is (locality),
// so keys are checked one at a time.
//
// Per key this is the Wing-Gong search as refined by Lowe: depth-first over the orders
// in which operations could take effect, where the next operation may be any one whose
// invocation is no later than the earliest completion among completed operations not
// yet placed; each step is checked against the register; dead ends backtrack; and every
// (set of placed operations, register state) pair is remembered so it is never explored
// twice.
//
// Outcomes (sim/history.h):
//   Ok       must take effect once, between its invocation and completion.
//   Fail     never took effect: ignored.
//   Unknown  may take effect once at any time after its invocation, or never. Unknown
//            gets observe nothing and are ignored.
// Equal timestamps count as overlapping (the lenient reading).
//
// Exact prunings on top (see KeySearch in the .cc): pure reads that fit now are placed
// at once; an unknown op is placed only right before an op it enables; values that can
// no longer be seen in time by the ops that need them cut the branch; unknown ops with
// the same effect are interchangeable; values nobody compares against share one id.
//
// The search is bounded by a step budget; running out yields Unknown, never a pass.
// Cost: ~2,000 ops over 10 keys with 16 clients take a few thousand steps (~ms). One
// hot key with 2,000 heavily overlapping ops and many weak observations (deletes, cas
// mismatches, unread writes) can take 10^5..10^6 steps and occasionally exhausts the
// default budget -- reported as Unknown.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "sim/history.h"

namespace kvr::sim {

enum class Verdict : uint8_t { Linearizable = 0, NotLinearizable = 1, Unknown = 2 };
const char* verdictName(Verdict v);

struct LinearizabilityOptions {
  // Search steps (one step = trying one operation as the next to take effect), summed
  // over all keys. Running out on any key makes the verdict Unknown unless another key
  // is definitely not linearizable.
  uint64_t maxSteps = 20'000'000;
  // Cap on memory for remembered search states, in 64-bit words. Beyond it the search
  // continues without remembering new states (slower, still exact).
  uint64_t maxMemoWords = uint64_t(1) << 24;  // 128 MiB
  // On a violation, shrink the failing key's completed operations to a small set that
  // is still not linearizable when every other operation on the key is weakened (reads
  // dropped, writes turned into unknown-outcome writes).
  bool minimize = true;
  uint64_t maxMinimizeSteps = 2'000'000;    // total search steps spent shrinking
  uint64_t maxMinimizeTrialSteps = 50'000;  // per trial; running out counts as "needed"
};

struct LinearizabilityResult {
  Verdict verdict = Verdict::Linearizable;
  // NotLinearizable: the key at fault. Unknown: the first key whose search ran out.
  std::string key;
  // NotLinearizable: ids (into History::ops()) of the operations to look at, in
  // invocation order: the completed ops that no order explains even with every other
  // op on the key weakened (see `minimize`), plus the uncertain writes of values they
  // read; or, when that is more than a screenful, the ops around the deepest point the
  // search reached.
  std::vector<History::OpId> ops;
  // Multi-line human-readable account: the key, the ops above, and where the search
  // got stuck (register value and the operations that could not go next).
  std::string explanation;
  uint64_t steps = 0;      // search steps spent (excluding minimization)
  size_t keysChecked = 0;  // keys fully decided (linearizable or not)
};

// Requires every op to pass validateOperation.
LinearizabilityResult checkLinearizability(const History& history,
                                           const LinearizabilityOptions& options = {});

}  // namespace kvr::sim

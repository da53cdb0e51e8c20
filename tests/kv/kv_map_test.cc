// KvMap (core/kv_map.h) against std::map, and its frozen views: a view never changes,
// whatever the map does afterwards; KvStore::freeze() serializes to the snapshot the
// store would have given at that moment.
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "core/kv.h"
#include "core/kv_map.h"
#include "tests/kv/kv_test_util.h"

namespace kvr {
namespace {

using Model = std::map<std::string, std::string>;

Model contents(const KvMap& m) {
  Model out;
  m.forEach([&](const KvItem& item) { out.emplace(item.key(), item.value()); });
  return out;
}

Model contents(const KvMapView& v) {
  Model out;
  v.forEach([&](const KvItem& item) { out.emplace(item.key(), item.value()); });
  return out;
}

std::string keyOf(uint32_t i) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "k%05u", i);
  return buf;
}

// Random puts, erases and freezes over a key space large enough to split leaves many
// times: the map always equals the model, and every view equals the model at its freeze.
RC_GTEST_PROP(KvMapProp, MatchesStdMapAndViewsNeverChange, ()) {
  const uint32_t keySpace = *rc::gen::inRange<uint32_t>(1, 2000);
  const size_t ops = *rc::gen::inRange<size_t>(0, 3000);
  KvMap map;
  Model model;
  std::vector<std::pair<KvMapView, Model>> views;
  for (size_t n = 0; n < ops; ++n) {
    const uint32_t what = *rc::gen::inRange<uint32_t>(0, 100);
    const std::string key = keyOf(*rc::gen::inRange<uint32_t>(0, keySpace));
    if (what < 65) {
      const std::string value = std::to_string(n);
      const int64_t old = map.put(key, value);
      auto it = model.find(key);
      RC_ASSERT(old == (it == model.end() ? -1 : int64_t(it->second.size())));
      model[key] = value;
    } else if (what < 97) {
      const int64_t removed = map.erase(key);
      auto it = model.find(key);
      RC_ASSERT(removed == (it == model.end() ? -1 : int64_t(key.size() + it->second.size())));
      if (it != model.end()) model.erase(it);
    } else if (views.size() < 8) {
      views.emplace_back(map.freeze(), model);
    }
    const KvItem* found = map.find(key);
    auto it = model.find(key);
    RC_ASSERT((found == nullptr) == (it == model.end()));
    if (found != nullptr) RC_ASSERT(found->value() == it->second);
  }
  RC_ASSERT(map.valid());
  RC_ASSERT(map.size() == model.size());
  RC_ASSERT(contents(map) == model);
  for (const auto& [view, then] : views) {
    RC_ASSERT(view.size() == then.size());
    RC_ASSERT(contents(view) == then);
  }
  // forEachFrom starts at the first key >= from.
  const std::string from = keyOf(*rc::gen::inRange<uint32_t>(0, keySpace));
  std::vector<std::string> got;
  map.forEachFrom(from, [&](const KvItem& item) {
    got.emplace_back(item.key());
    return got.size() < 5;
  });
  std::vector<std::string> want;
  for (auto it = model.lower_bound(from); it != model.end() && want.size() < 5; ++it) {
    want.push_back(it->first);
  }
  RC_ASSERT(got == want);
  // A copy is independent of the original.
  KvMap copy = map;
  copy.put("zzz", "new");
  RC_ASSERT(map.find("zzz") == nullptr);
  RC_ASSERT(copy.valid());
}

TEST(KvMap, LoadInKeyOrderFillsLeaves) {
  KvMap map;
  for (uint32_t i = 0; i < 10 * KvMap::kLeafMax; ++i) map.put(keyOf(i), "v");
  EXPECT_TRUE(map.valid());
  EXPECT_EQ(map.leafCount(), 10u);
}

// Erasing most keys, in any order, merges the sparse leaves: about a leaf per
// kLeafMergeBelow survivors, not a leaf per survivor; views taken before still hold
// everything.
RC_GTEST_PROP(KvMapProp, ErasingMostKeysMergesLeaves, ()) {
  const uint32_t n = *rc::gen::inRange<uint32_t>(KvMap::kLeafMax, 40 * KvMap::kLeafMax);
  KvMap map;
  Model model;
  for (uint32_t i = 0; i < n; ++i) {
    map.put(keyOf(i), "v");
    model[keyOf(i)] = "v";
  }
  const KvMapView before = map.freeze();
  const Model all = model;
  const uint32_t keepOneIn = *rc::gen::inRange<uint32_t>(2, 200);
  for (uint32_t i = 0; i < n; ++i) {
    const uint32_t k = uint32_t((uint64_t(i) * 7919) % n);  // a scattered order
    if (k % keepOneIn == 0) continue;
    RC_ASSERT(map.erase(keyOf(k)) > 0);
    model.erase(keyOf(k));
  }
  RC_ASSERT(map.valid());
  RC_ASSERT(contents(map) == model);
  RC_ASSERT(contents(before) == all);
  // A sparse leaf (< kLeafMergeBelow) only sits between dense ones (their sum with it
  // exceeds half a leaf), so two neighbouring leaves hold at least kLeafMergeBelow + 2.
  RC_ASSERT(map.leafCount() <= 2 * map.size() / (KvMap::kLeafMergeBelow + 2) + 2);
  RC_ASSERT(map.leafCount() >= map.size() / KvMap::kLeafMax);
}

// A frozen store serializes to the snapshot it had at the freeze, after any number of
// later applies; materialize() makes the bytes once.
RC_GTEST_PROP(KvMapProp, FrozenStoreSerializesToTheSnapshotOfItsMoment, ()) {
  const auto steps = *rc::gen::container<std::vector<test::Step>>(test::anyStep());
  const std::vector<test::LogEntry> log = test::materialize(steps);
  const size_t cut = *rc::gen::inRange<size_t>(0, log.size() + 1);
  KvStore store;
  for (size_t i = 0; i < cut; ++i) test::applyEntry(store, log[i]);
  const std::string want = store.snapshot();
  std::shared_ptr<KvFrozen> frozen = store.freeze();
  RC_ASSERT(frozen->appliedIndex() == store.appliedIndex());
  for (size_t i = cut; i < log.size(); ++i) test::applyEntry(store, log[i]);
  RC_ASSERT(frozen->serialize() == want);
  // Streamed (twice, as the node writes a file): the same bytes.
  for (int pass = 0; pass < 2; ++pass) {
    std::string streamed;
    const uint64_t n = frozen->stream([&](std::string_view piece) { streamed.append(piece); });
    RC_ASSERT(streamed == want);
    RC_ASSERT(n == want.size() && frozen->streamedBytes() == n);
  }
  RC_ASSERT(frozen->materialized() == nullptr);
  auto bytes = frozen->materialize();
  RC_ASSERT(*bytes == want);
  RC_ASSERT(frozen->materialize() == bytes);
  KvStore back;
  RC_ASSERT(back.restore(*bytes));
}

// A store of several stream pieces streams to exactly its snapshot, a piece at a time.
TEST(KvMap, LargeFrozenStoreStreamsToItsSnapshotInPieces) {
  KvStore store;
  uint64_t index = 1;
  store.apply(index++, test::openSession());
  uint64_t request = 1;
  for (uint32_t i = 0; i < 30'000; ++i) {
    store.apply(index++, test::put(1, request++, keyOf(i), std::string(100, 'v')));
  }
  const std::string want = store.snapshot();
  std::shared_ptr<KvFrozen> frozen = store.freeze();
  store.apply(index++, test::put(1, request++, keyOf(7), "changed after the freeze"));
  std::string streamed;
  size_t pieces = 0;
  const uint64_t n = frozen->stream([&](std::string_view piece) {
    EXPECT_LE(piece.size(), KvFrozen::kStreamPieceBytes + 200);
    streamed.append(piece);
    ++pieces;
  });
  EXPECT_EQ(n, want.size());
  EXPECT_TRUE(streamed == want);
  EXPECT_GE(pieces, want.size() / KvFrozen::kStreamPieceBytes);
  EXPECT_EQ(frozen->materialized(), nullptr);
}

// The node's use: a thread serializes the view while this one keeps changing the store
// (run under TSan/ASan this checks the sharing, not just the result).
TEST(KvMap, ViewSerializedOnAnotherThreadWhileTheStoreChanges) {
  KvStore store;
  uint64_t index = 1;
  store.apply(index++, test::openSession());
  const uint64_t client = 1;
  uint64_t request = 1;
  for (uint32_t i = 0; i < 20'000; ++i) {
    store.apply(index++, test::put(client, request++, keyOf(i % 15000), std::string(40, 'a')));
  }
  const std::string want = store.snapshot();
  std::shared_ptr<KvFrozen> frozen = store.freeze();
  std::shared_ptr<const std::string> got;
  std::thread serializer([&]() { got = frozen->materialize(); });
  for (uint32_t i = 0; i < 20'000; ++i) {
    if (i % 3 == 0) {
      store.apply(index++, test::del(client, request++, keyOf((i * 7) % 15000)));
    } else {
      store.apply(index++,
                  test::put(client, request++, keyOf((i * 13) % 16000), std::to_string(i)));
    }
  }
  serializer.join();
  frozen.reset();
  EXPECT_EQ(*got, want);
  EXPECT_TRUE(store.map().valid());
}

}  // namespace
}  // namespace kvr

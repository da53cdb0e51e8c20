// The KV store's ordered map from key to value, built for two things std::map does badly:
//
//  - Frozen views in O(leaves). freeze() returns a KvMapView, an immutable picture of the
//    map at that moment, and bumps an epoch. A leaf made in an earlier epoch may be shared
//    with a view, so the map copies it (pointers only) before its first change in the new
//    epoch; a view never sees a change. A view may be read, and released, on another thread
//    while the owning thread keeps changing the map: views only read, leaves and items are
//    reference counted with atomics, and the owner never writes a leaf a view can reach.
//  - Compactness. A pair is one allocation (a small header, the key and the value bytes,
//    about 24 bytes of overhead with malloc's); leaves hold up to kLeafMax pointers, sorted;
//    the top level is a vector of leaves with their first keys for the binary search.
//    std::map<std::string, std::string> spends about 110 bytes per pair on a 96-byte node
//    and a second allocation for a value longer than 15 bytes.
//
// Deterministic: the structure is a function of the sequence of calls (no addresses or
// hashing reach an output); iteration is in key order.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace kvr {

// An immutable (key, value) pair in one allocation with an atomic reference count.
class KvItem {
 public:
  std::string_view key() const { return {bytes(), keyLen_}; }
  std::string_view value() const { return {bytes() + keyLen_, valueLen_}; }

 private:
  friend class KvItemRef;
  KvItem(std::string_view key, std::string_view value);
  const char* bytes() const { return reinterpret_cast<const char*>(this + 1); }

  mutable std::atomic<uint32_t> refs_{1};
  uint32_t keyLen_;
  uint32_t valueLen_;
};

// An owning pointer to a KvItem (intrusive, atomic count).
class KvItemRef {
 public:
  KvItemRef() = default;
  static KvItemRef make(std::string_view key, std::string_view value);
  KvItemRef(const KvItemRef& other) noexcept;
  KvItemRef(KvItemRef&& other) noexcept : item_(other.item_) { other.item_ = nullptr; }
  KvItemRef& operator=(const KvItemRef& other) noexcept;
  KvItemRef& operator=(KvItemRef&& other) noexcept;
  ~KvItemRef() { release(); }

  const KvItem* get() const { return item_; }
  const KvItem* operator->() const { return item_; }

 private:
  void release() noexcept;
  KvItem* item_ = nullptr;
};

struct KvLeaf {
  uint64_t epoch = 0;            // the map's epoch when this leaf was made
  std::vector<KvItemRef> items;  // ascending keys, 1..KvMap::kLeafMax of them
};

// An immutable view of a KvMap at one moment.
class KvMapView {
 public:
  KvMapView() = default;
  size_t size() const { return size_; }
  // Calls f(const KvItem&) for every pair in key order.
  template <typename F>
  void forEach(F&& f) const {
    for (const auto& leaf : leaves_) {
      for (const KvItemRef& item : leaf->items) f(*item.get());
    }
  }

 private:
  friend class KvMap;
  std::vector<std::shared_ptr<const KvLeaf>> leaves_;
  size_t size_ = 0;
};

class KvMap {
 public:
  static constexpr size_t kLeafMax = 128;
  // An erase that leaves a leaf with fewer pairs than this merges it into a neighbour
  // when the two fit in half a leaf.
  static constexpr size_t kLeafMergeBelow = kLeafMax / 4;

  KvMap() = default;
  // A copy has its own leaves (sharing the immutable items).
  KvMap(const KvMap& other);
  KvMap& operator=(const KvMap& other);
  KvMap(KvMap&&) noexcept = default;
  KvMap& operator=(KvMap&&) noexcept = default;

  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }

  // The pair with this key, or null. Valid until the next change of the map.
  const KvItem* find(std::string_view key) const;
  // Inserts or replaces. Returns the size of the value it replaced, or -1 if it inserted.
  int64_t put(std::string_view key, std::string_view value);
  // Removes the key; returns the removed pair's key + value bytes, or -1 if it was absent.
  int64_t erase(std::string_view key);
  void clear();

  // Appends a pair whose key is greater than every key in the map (restoring in order).
  void pushBack(std::string_view key, std::string_view value);

  // Calls f(const KvItem&) in key order from the first key >= `from` while f returns true.
  template <typename F>
  void forEachFrom(std::string_view from, F&& f) const {
    if (leaves_.empty()) return;
    size_t li = leafFor(from);
    const auto& items0 = leaves_[li]->items;
    size_t i = lowerBound(items0, from);
    for (; li < leaves_.size(); ++li, i = 0) {
      const auto& items = leaves_[li]->items;
      for (; i < items.size(); ++i) {
        if (!f(*items[i].get())) return;
      }
    }
  }
  template <typename F>
  void forEach(F&& f) const {
    forEachFrom(std::string_view(), [&](const KvItem& item) {
      f(item);
      return true;
    });
  }

  // An immutable view of the map as it is now. O(number of leaves); later changes copy
  // each shared leaf once, on its first change.
  KvMapView freeze();

  // Checks the structure (sorted, leaf sizes, first keys, counts); for tests.
  bool valid() const;
  size_t leafCount() const { return leaves_.size(); }

 private:
  // The leaf whose range holds `key`: the last leaf whose first key is <= key (0 if none).
  size_t leafFor(std::string_view key) const;
  static size_t lowerBound(const std::vector<KvItemRef>& items, std::string_view key);
  // The leaf at `li`, copied first if a view may share it.
  KvLeaf& mutableLeaf(size_t li);
  void mergeSparse(size_t li);
  std::shared_ptr<KvLeaf> newLeaf();

  uint64_t epoch_ = 1;
  size_t size_ = 0;
  std::vector<std::shared_ptr<KvLeaf>> leaves_;
  std::vector<std::string> firstKeys_;  // firstKeys_[i] == leaves_[i]->items[0].key()
};

}  // namespace kvr

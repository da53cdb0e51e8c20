#include "core/kv_map.h"

#include <algorithm>
#include <cstring>
#include <new>

#include <kj/debug.h>

namespace kvr {

KvItem::KvItem(std::string_view key, std::string_view value)
    : keyLen_(static_cast<uint32_t>(key.size())),
      valueLen_(static_cast<uint32_t>(value.size())) {
  char* out = reinterpret_cast<char*>(this + 1);
  if (!key.empty()) std::memcpy(out, key.data(), key.size());
  if (!value.empty()) std::memcpy(out + key.size(), value.data(), value.size());
}

KvItemRef KvItemRef::make(std::string_view key, std::string_view value) {
  KJ_REQUIRE(key.size() <= UINT32_MAX && value.size() <= UINT32_MAX - key.size());
  void* mem = ::operator new(sizeof(KvItem) + key.size() + value.size());
  KvItemRef ref;
  ref.item_ = new (mem) KvItem(key, value);
  return ref;
}

KvItemRef::KvItemRef(const KvItemRef& other) noexcept : item_(other.item_) {
  if (item_ != nullptr) item_->refs_.fetch_add(1, std::memory_order_relaxed);
}

KvItemRef& KvItemRef::operator=(const KvItemRef& other) noexcept {
  if (other.item_ != nullptr) other.item_->refs_.fetch_add(1, std::memory_order_relaxed);
  release();
  item_ = other.item_;
  return *this;
}

KvItemRef& KvItemRef::operator=(KvItemRef&& other) noexcept {
  if (this != &other) {
    release();
    item_ = other.item_;
    other.item_ = nullptr;
  }
  return *this;
}

void KvItemRef::release() noexcept {
  if (item_ == nullptr) return;
  if (item_->refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
    item_->~KvItem();
    ::operator delete(static_cast<void*>(item_));
  }
  item_ = nullptr;
}

KvMap::KvMap(const KvMap& other) : size_(other.size_), firstKeys_(other.firstKeys_) {
  leaves_.reserve(other.leaves_.size());
  for (const auto& leaf : other.leaves_) {
    auto copy = newLeaf();
    copy->items = leaf->items;
    leaves_.push_back(std::move(copy));
  }
}

KvMap& KvMap::operator=(const KvMap& other) {
  if (this != &other) {
    KvMap copy(other);
    *this = std::move(copy);
  }
  return *this;
}

std::shared_ptr<KvLeaf> KvMap::newLeaf() {
  auto leaf = std::make_shared<KvLeaf>();
  leaf->epoch = epoch_;
  return leaf;
}

size_t KvMap::leafFor(std::string_view key) const {
  // First leaf whose first key is > key, minus one.
  auto it = std::upper_bound(firstKeys_.begin(), firstKeys_.end(), key,
                             [](std::string_view k, const std::string& first) {
                               return k < first;
                             });
  return it == firstKeys_.begin() ? 0 : size_t(it - firstKeys_.begin()) - 1;
}

size_t KvMap::lowerBound(const std::vector<KvItemRef>& items, std::string_view key) {
  auto it = std::lower_bound(items.begin(), items.end(), key,
                             [](const KvItemRef& item, std::string_view k) {
                               return item->key() < k;
                             });
  return size_t(it - items.begin());
}

KvLeaf& KvMap::mutableLeaf(size_t li) {
  std::shared_ptr<KvLeaf>& leaf = leaves_[li];
  if (leaf->epoch != epoch_) {
    // A view taken since this leaf was made may hold it: change a copy.
    auto copy = newLeaf();
    copy->items.reserve(kLeafMax);
    copy->items = leaf->items;
    leaf = std::move(copy);
  }
  return *leaf;
}

const KvItem* KvMap::find(std::string_view key) const {
  if (leaves_.empty()) return nullptr;
  const auto& items = leaves_[leafFor(key)]->items;
  size_t i = lowerBound(items, key);
  if (i == items.size() || items[i]->key() != key) return nullptr;
  return items[i].get();
}

int64_t KvMap::put(std::string_view key, std::string_view value) {
  if (leaves_.empty()) {
    pushBack(key, value);
    return -1;
  }
  const size_t li = leafFor(key);
  {
    const auto& items = leaves_[li]->items;
    size_t i = lowerBound(items, key);
    if (i < items.size() && items[i]->key() == key) {
      const int64_t old = int64_t(items[i]->value().size());
      mutableLeaf(li).items[i] = KvItemRef::make(key, value);
      return old;
    }
  }
  KvLeaf& leaf = mutableLeaf(li);
  size_t i = lowerBound(leaf.items, key);
  ++size_;
  if (leaf.items.size() < kLeafMax) {
    leaf.items.insert(leaf.items.begin() + ptrdiff_t(i), KvItemRef::make(key, value));
    if (i == 0) firstKeys_[li] = std::string(key);  // only leaf 0 can gain a smaller first key
    return -1;
  }
  // Full: split. Appending past the end of the last leaf starts a new leaf, so that a
  // load in key order leaves full leaves behind; otherwise split in halves.
  auto right = newLeaf();
  right->items.reserve(kLeafMax);
  if (li + 1 == leaves_.size() && i == leaf.items.size()) {
    right->items.push_back(KvItemRef::make(key, value));
  } else {
    const size_t half = kLeafMax / 2;
    right->items.assign(std::make_move_iterator(leaf.items.begin() + ptrdiff_t(half)),
                        std::make_move_iterator(leaf.items.end()));
    leaf.items.resize(half);
    if (i <= half) {
      leaf.items.insert(leaf.items.begin() + ptrdiff_t(i), KvItemRef::make(key, value));
      if (i == 0) firstKeys_[li] = std::string(key);
    } else {
      right->items.insert(right->items.begin() + ptrdiff_t(i - half),
                          KvItemRef::make(key, value));
    }
  }
  firstKeys_.insert(firstKeys_.begin() + ptrdiff_t(li + 1),
                    std::string(right->items[0]->key()));
  leaves_.insert(leaves_.begin() + ptrdiff_t(li + 1), std::move(right));
  return -1;
}

int64_t KvMap::erase(std::string_view key) {
  if (leaves_.empty()) return -1;
  const size_t li = leafFor(key);
  {
    const auto& items = leaves_[li]->items;
    size_t i = lowerBound(items, key);
    if (i == items.size() || items[i]->key() != key) return -1;
  }
  KvLeaf& leaf = mutableLeaf(li);
  size_t i = lowerBound(leaf.items, key);
  const int64_t bytes = int64_t(leaf.items[i]->key().size() + leaf.items[i]->value().size());
  leaf.items.erase(leaf.items.begin() + ptrdiff_t(i));
  --size_;
  if (leaf.items.empty()) {
    leaves_.erase(leaves_.begin() + ptrdiff_t(li));
    firstKeys_.erase(firstKeys_.begin() + ptrdiff_t(li));
  } else if (i == 0) {
    firstKeys_[li] = std::string(leaf.items[0]->key());
  }
  if (li < leaves_.size() && leaves_[li]->items.size() < kLeafMergeBelow) mergeSparse(li);
  return bytes;
}

void KvMap::mergeSparse(size_t li) {
  // With a neighbour that leaves room for growth (together at most half a leaf), or
  // not at all: a map that lost most of its keys keeps about kLeafMergeBelow or more
  // pairs per leaf instead of a leaf (and its kLeafMax slots) per surviving key.
  auto fits = [&](size_t a) {
    return leaves_[a]->items.size() + leaves_[a + 1]->items.size() <= kLeafMax / 2;
  };
  size_t left;
  if (li + 1 < leaves_.size() && fits(li)) {
    left = li;
  } else if (li > 0 && fits(li - 1)) {
    left = li - 1;
  } else {
    return;
  }
  const std::shared_ptr<KvLeaf> right = leaves_[left + 1];  // read only: a view may share it
  KvLeaf& into = mutableLeaf(left);
  into.items.insert(into.items.end(), right->items.begin(), right->items.end());
  leaves_.erase(leaves_.begin() + ptrdiff_t(left + 1));
  firstKeys_.erase(firstKeys_.begin() + ptrdiff_t(left + 1));
}

void KvMap::clear() {
  leaves_.clear();
  firstKeys_.clear();
  size_ = 0;
}

void KvMap::pushBack(std::string_view key, std::string_view value) {
  KJ_REQUIRE(leaves_.empty() || leaves_.back()->items.back()->key() < key,
             "pushBack out of order");
  if (leaves_.empty() || leaves_.back()->items.size() >= kLeafMax) {
    auto leaf = newLeaf();
    leaf->items.reserve(kLeafMax);
    leaves_.push_back(std::move(leaf));
    firstKeys_.emplace_back(key);
  }
  mutableLeaf(leaves_.size() - 1).items.push_back(KvItemRef::make(key, value));
  ++size_;
}

KvMapView KvMap::freeze() {
  KvMapView view;
  view.leaves_.assign(leaves_.begin(), leaves_.end());
  view.size_ = size_;
  ++epoch_;
  return view;
}

bool KvMap::valid() const {
  if (leaves_.size() != firstKeys_.size()) return false;
  size_t count = 0;
  const KvItem* prev = nullptr;
  for (size_t li = 0; li < leaves_.size(); ++li) {
    const auto& items = leaves_[li]->items;
    if (items.empty() || items.size() > kLeafMax) return false;
    if (leaves_[li]->epoch > epoch_) return false;
    if (items[0]->key() != firstKeys_[li]) return false;
    for (const KvItemRef& item : items) {
      if (prev != nullptr && !(prev->key() < item->key())) return false;
      prev = item.get();
      ++count;
    }
  }
  return count == size_;
}

}  // namespace kvr

// An immutable byte string shared by reference count: the payload of a log entry.
//
// A leader hands each entry's bytes to storage (Ready.entries), to every follower's
// Append and, once committed, to the state machine (Ready.committed); as a std::string
// each of those was an allocation and a copy of the command's bytes (five per put on a
// 3-node leader). Copying a SharedBytes only increments a counter. The counter is atomic
// because the node's WAL pool thread holds copies (PersistBatch) that the loop thread
// may drop its own copies of at any time.
//
// The bytes and the counter share one allocation; the empty string allocates nothing.
// Equality compares the bytes, never the pointers, so no output depends on where the
// bytes live.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>
#include <string>
#include <string_view>
#include <utility>

namespace kvr {

class SharedBytes {
 public:
  SharedBytes() = default;
  // Implicit, so an Entry can still be built from a string: copies the bytes once.
  // cppcheck-suppress noExplicitConstructor
  SharedBytes(std::string_view bytes) {
    if (bytes.empty()) return;
    void* raw = ::operator new(sizeof(Block) + bytes.size());
    block_ = new (raw) Block{{1}, bytes.size()};
    std::memcpy(block_->bytes(), bytes.data(), bytes.size());
  }
  // cppcheck-suppress noExplicitConstructor
  SharedBytes(const std::string& bytes) : SharedBytes(std::string_view(bytes)) {}
  // cppcheck-suppress noExplicitConstructor
  SharedBytes(const char* bytes) : SharedBytes(std::string_view(bytes)) {}

  SharedBytes(const SharedBytes& other) noexcept : block_(other.block_) {
    // relaxed: a new reference is made from an existing one, which keeps the block alive.
    if (block_ != nullptr) block_->refs.fetch_add(1, std::memory_order_relaxed);
  }
  SharedBytes(SharedBytes&& other) noexcept : block_(std::exchange(other.block_, nullptr)) {}
  SharedBytes& operator=(const SharedBytes& other) noexcept {
    SharedBytes copy(other);
    std::swap(block_, copy.block_);
    return *this;
  }
  SharedBytes& operator=(SharedBytes&& other) noexcept {
    SharedBytes moved(std::move(other));
    std::swap(block_, moved.block_);
    return *this;
  }
  ~SharedBytes() { release(); }

  size_t size() const { return block_ == nullptr ? 0 : block_->size; }
  bool empty() const { return block_ == nullptr; }
  const char* data() const { return block_ == nullptr ? "" : block_->bytes(); }
  std::string_view view() const { return {data(), size()}; }
  operator std::string_view() const { return view(); }
  std::string str() const { return std::string(view()); }
  const char* begin() const { return data(); }
  const char* end() const { return data() + size(); }
  char operator[](size_t i) const { return data()[i]; }

  friend bool operator==(const SharedBytes& a, const SharedBytes& b) {
    return a.view() == b.view();
  }

 private:
  struct Block {
    std::atomic<uint64_t> refs;
    size_t size;
    // The bytes follow the header in the same allocation.
    char* bytes() { return reinterpret_cast<char*>(this + 1); }
  };

  void release() noexcept {
    if (block_ == nullptr) return;
    // acq_rel: the thread that frees the block must see every other owner's reads done.
    if (block_->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      block_->~Block();
      ::operator delete(block_);
    }
    block_ = nullptr;
  }

  Block* block_ = nullptr;
};

}  // namespace kvr

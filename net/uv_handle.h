// Ownership of one libuv handle from C++.
//
// libuv frees nothing itself: a handle's memory must stay valid from uv_*_init until the
// close callback that follows uv_close(), which runs on a later loop iteration. Owners in
// this layer (ports, timers, fd watchers) are destroyed at arbitrary times, so each handle
// lives on the heap and deletes itself in its close callback; the owner only asks for the
// close. Whoever destroys the owner must run the loop once more (uv_run) before
// uv_loop_close(), as with any libuv handle.
#pragma once

#include <uv.h>

#include <kj/common.h>
#include <kj/debug.h>

namespace kvr::net {

template <typename Handle>
class UvHandle {
 public:
  UvHandle() : handle_(new Handle()) {}
  ~UvHandle() { close(); }
  KJ_DISALLOW_COPY(UvHandle);

  Handle* get() const { return handle_; }
  uv_handle_t* base() const { return reinterpret_cast<uv_handle_t*>(handle_); }

  // Pass the result of the uv_*_init call; the handle must be closed (not deleted) from
  // then on.
  void checkInit(int status, const char* what) {
    KJ_REQUIRE(status == 0, "libuv handle initialisation failed", what, uv_strerror(status));
    initialized_ = true;
  }

  // Stops the handle at once (no callback fires afterwards) and frees it once libuv is done.
  void close() {
    if (handle_ == nullptr) return;
    if (initialized_) {
      handle_->data = nullptr;
      uv_close(base(), [](uv_handle_t* h) { delete reinterpret_cast<Handle*>(h); });
    } else {
      delete handle_;
    }
    handle_ = nullptr;
  }

 private:
  Handle* handle_;
  bool initialized_ = false;
};

}  // namespace kvr::net

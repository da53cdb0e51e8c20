// Readiness of one file descriptor as kj promises, watched by one uv_poll_t.
//
// At most one waiter per kind (readable, writable, hang-up) at a time, as with kj's own
// FdObserver. The poll handle watches the kinds somebody waits for, and keeps watching a
// kind after its waiter is done until it fires with nobody waiting: kj waits again right
// after each read that drains the socket, and re-arming each time cost an epoll_ctl (two
// with libuv's lazy removal) per wait. An idle connection still costs no wake-ups: a kind
// that fires unclaimed is dropped at once. Readiness is a hint: callers
// retry their non-blocking syscall, which reports any real error.
#pragma once

#include <uv.h>

#include <kj/async.h>

#include "net/uv_handle.h"

namespace kvr::net {

class UvFdWatcher {
 public:
  UvFdWatcher(uv_loop_t* loop, int fd);
  // Rejects outstanding waiters (DISCONNECTED) and stops watching. The fd itself is not
  // closed here; close it after this object is gone.
  ~UvFdWatcher() noexcept(false);
  KJ_DISALLOW_COPY(UvFdWatcher);

  kj::Promise<void> whenReadable();
  kj::Promise<void> whenWritable();
  // Resolves when the peer has hung up (or the socket reports an error).
  kj::Promise<void> whenHungUp();

  int fd() const { return fd_; }
  uv_loop_t* loop() const { return loop_; }

 private:
  enum Kind { READABLE = 0, WRITABLE = 1, HUNG_UP = 2, KIND_COUNT = 3 };
  class Waiter;

  kj::Promise<void> waitFor(Kind kind);
  void fire(Kind kind);
  void setInterest(int wanted);  // starts, changes or stops the poll handle
  static void onPoll(uv_poll_t* handle, int status, int events);

  uv_loop_t* loop_;
  int fd_;
  UvHandle<uv_poll_t> handle_;
  Waiter* waiters_[KIND_COUNT] = {nullptr, nullptr, nullptr};
  int interest_ = 0;  // uv event mask the poll handle is started with (0: stopped)
};

}  // namespace kvr::net

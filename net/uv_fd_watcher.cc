#include "net/uv_fd_watcher.h"

#include <kj/debug.h>

namespace kvr::net {

namespace {
constexpr int kUvEventOf[] = {UV_READABLE, UV_WRITABLE, UV_DISCONNECT};
constexpr const char* kKindName[] = {"readable", "writable", "hang-up"};
}  // namespace

// The adapter behind one waiting promise. Dropping the promise unregisters it.
class UvFdWatcher::Waiter {
 public:
  Waiter(kj::PromiseFulfiller<void>& fulfiller, UvFdWatcher& watcher, Kind kind)
      : fulfiller_(fulfiller), watcher_(&watcher), kind_(kind) {
    KJ_REQUIRE(watcher.waiters_[kind] == nullptr,
               "already waiting for this fd to become ready; wait for the previous event",
               kKindName[kind], watcher.fd_);
    watcher.waiters_[kind] = this;
    watcher.setInterest(watcher.interest_ | kUvEventOf[kind]);
  }
  ~Waiter() { detach(); }
  KJ_DISALLOW_COPY(Waiter);

  void fulfill() {
    detach();
    fulfiller_.fulfill();
  }
  void reject(kj::Exception&& e) {
    UvFdWatcher* watcher = watcher_;
    watcher_ = nullptr;
    if (watcher != nullptr) watcher->waiters_[kind_] = nullptr;
    fulfiller_.reject(kj::mv(e));
  }

 private:
  // Leaves the interest armed: the next waiter (kj reads again at once, and waits again
  // on EAGAIN) then costs no epoll_ctl. onPoll drops a kind nobody waits for.
  void detach() {
    if (watcher_ == nullptr) return;
    UvFdWatcher* watcher = watcher_;
    watcher_ = nullptr;
    if (watcher->waiters_[kind_] == this) watcher->waiters_[kind_] = nullptr;
  }

  kj::PromiseFulfiller<void>& fulfiller_;
  UvFdWatcher* watcher_;
  Kind kind_;
};

UvFdWatcher::UvFdWatcher(uv_loop_t* loop, int fd) : loop_(loop), fd_(fd) {
  int status = uv_poll_init(loop_, handle_.get(), fd_);
  // uv_poll_init fails e.g. for regular files, which epoll cannot watch.
  KJ_REQUIRE(status == 0, "cannot watch this fd with libuv", fd_, uv_strerror(status));
  handle_.checkInit(status, "uv_poll_init");
  handle_.get()->data = this;
}

UvFdWatcher::~UvFdWatcher() noexcept(false) {
  handle_.close();
  interest_ = 0;
  for (int k = 0; k < KIND_COUNT; ++k) {
    if (waiters_[k] != nullptr) {
      waiters_[k]->reject(KJ_EXCEPTION(DISCONNECTED, "stream closed while waiting on it", fd_));
    }
  }
}

kj::Promise<void> UvFdWatcher::whenReadable() { return waitFor(READABLE); }
kj::Promise<void> UvFdWatcher::whenWritable() { return waitFor(WRITABLE); }
kj::Promise<void> UvFdWatcher::whenHungUp() { return waitFor(HUNG_UP); }

kj::Promise<void> UvFdWatcher::waitFor(Kind kind) {
  return kj::newAdaptedPromise<void, Waiter>(*this, kind);
}

void UvFdWatcher::fire(Kind kind) {
  Waiter* w = waiters_[kind];
  if (w != nullptr) w->fulfill();
}

void UvFdWatcher::setInterest(int wanted) {
  if (handle_.get() == nullptr) return;  // closing
  if (wanted == interest_) return;
  if (wanted == 0) {
    uv_poll_stop(handle_.get());
  } else {
    int status = uv_poll_start(handle_.get(), wanted, &UvFdWatcher::onPoll);
    KJ_REQUIRE(status == 0, "uv_poll_start failed", fd_, uv_strerror(status));
  }
  interest_ = wanted;
}

void UvFdWatcher::onPoll(uv_poll_t* handle, int status, int events) {
  auto* self = static_cast<UvFdWatcher*>(handle->data);
  if (self == nullptr) return;
  if (status < 0) {
    // libuv has stopped the handle. Wake every waiter: their syscalls report the error.
    self->interest_ = 0;
    events = UV_READABLE | UV_WRITABLE | UV_DISCONNECT;
  }
  // Firing may destroy waiters (never this watcher: its owner outlives the callback,
  // since firing only queues kj events).
  // A kind that fired with nobody waiting stops being watched (level-triggered, it would
  // fire on every turn); a waiter arms it again.
  int unclaimed = 0;
  for (int k = 0; k < KIND_COUNT; ++k) {
    if ((events & kUvEventOf[k]) == 0) continue;
    if (self->waiters_[k] == nullptr) {
      unclaimed |= kUvEventOf[k];
    } else {
      self->fire(static_cast<Kind>(k));
    }
  }
  if (status >= 0) self->setInterest(self->interest_ & ~unclaimed);
}

}  // namespace kvr::net

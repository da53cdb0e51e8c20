#include "net/run_on_pool.h"

#include <cstdlib>

namespace kvr::net::detail {

namespace {

PoolJob* jobOf(uv_work_t* request) { return static_cast<PoolJob*>(request->data); }

void onPoolThread(uv_work_t* request) { jobOf(request)->runOnPoolThread(); }

void onLoopThread(uv_work_t* request, int status) {
  std::unique_ptr<PoolJob> job(jobOf(request));
  // Fulfilling only queues kj events; an exception here would have to unwind through
  // libuv's C frames, so it is fatal.
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() { job->completeOnLoopThread(status); })) {
    KJ_LOG(FATAL, "completing thread-pool work failed", *e);
    std::abort();
  }
}

}  // namespace

void queuePoolJob(uv_loop_t* loop, std::unique_ptr<PoolJob> job) {
  job->request.data = job.get();
  int status = uv_queue_work(loop, &job->request, &onPoolThread, &onLoopThread);
  KJ_REQUIRE(status == 0, "uv_queue_work failed", uv_strerror(status));
  job.release();  // libuv holds it until onLoopThread
}

}  // namespace kvr::net::detail

// kvsim: runs seeded chaos simulations of the cluster and checks them.
//
//   kvsim --seed S                 one run
//   kvsim --seeds A..B             many runs, with a progress line and a summary
//   kvsim ... --nodes N --clients C --ops K --faults all|none|LIST
//   kvsim --seed S --trace FILE --history FILE
//   kvsim ... --json               the summary as one JSON object on the last line
//   kvsim --seed S --shrink        minimize a failing scenario, then its schedule; write
//                                  a replay file
//   kvsim --replay FILE            run a replay file's schedule (with --trace, --timeline)
//   kvsim --seeds A..B --jobs N    the seeds in N worker processes (default: one per core)
//   kvsim --merge FILE...          one summary from the --json summaries of shards
//   kvsim ... --require-probes     fail unless every coverage probe (core/probe.h) was hit
//
// --jobs: the parent forks N workers before running anything and hands out seeds one
// at a time over a pipe per worker (at most two in flight each, so a slow seed does not
// hold up a fixed share of the range); each worker runs its seed and writes the
// RunResult back over its own pipe. The parent prints the violation and progress lines
// and accumulates the totals strictly in seed order, holding back results that arrive
// early, so the output is the same as a serial run's except for wall-clock figures.
// Fork rather than re-exec: a worker needs nothing but the parsed flags it inherits,
// results travel as binary RunResults (no printing and re-parsing of the summary), and
// seeds are balanced dynamically instead of in fixed sub-ranges. A worker that dies (a
// signal: a crash outside the core's exception handling) fails the seed it was running
// with property "crash"; a replacement worker takes over its other seeds.
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "sim/replay.h"
#include "sim/shrink.h"
#include "sim/summary.h"
#include "sim/world.h"

using kvr::sim::Fault;
using kvr::sim::kFaultCount;
using kvr::sim::RunOptions;
using kvr::sim::RunResult;
using kvr::sim::Scenario;
using kvr::sim::ScenarioPins;
using kvr::sim::Summary;

namespace {

[[noreturn]] void usage(const char* error) {
  if (error != nullptr) fprintf(stderr, "kvsim: %s\n", error);
  fprintf(stderr,
          "usage: kvsim (--seed S | --seeds A..B) [--nodes N] [--clients C] [--ops K] [--keys "
          "N]\n"
          "             [--faults all|none|LIST] [--membership on|off] [--trace FILE]\n"
          "             [--history FILE] [--timeline FILE.html] [--shrink-budget RUNS]\n"
          "             [--replay-out FILE]\n"
          "       kvsim --replay FILE [--trace FILE] [--history FILE] [--timeline FILE]\n"
          "             [--json] [--shrink] [--quiet] [--jobs N] [--require-probes]\n"
          "       kvsim --merge FILE...   (the --json summaries of shards of one seed range)\n"
          "faults: drop delay reorder duplicate partition crash pause clock_drift\n"
          "        torn_write bit_flip fsync_error slow_fsync client_loss replay\n"
          "        isolate_leader lost_write misdirected_write\n"
          "--jobs: worker processes for --seeds (default: the cores this process may use)\n");
  exit(2);
}

uint64_t parseU64(const char* flag, const char* text) {
  char* end = nullptr;
  errno = 0;
  unsigned long long v = strtoull(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0') {
    fprintf(stderr, "kvsim: %s wants a number, got '%s'\n", flag, text);
    exit(2);
  }
  return v;
}

// The cores this process may run on: the affinity mask (taskset, cgroup cpusets, Slurm)
// when it can be read, else the online cores.
uint32_t defaultJobs() {
  long online = sysconf(_SC_NPROCESSORS_ONLN);
  uint32_t n = online > 0 ? static_cast<uint32_t>(online) : 1;
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) {
    int allowed = CPU_COUNT(&set);
    if (allowed > 0 && static_cast<uint32_t>(allowed) < n) n = static_cast<uint32_t>(allowed);
  }
  return n;
}

// Hooks for testing kvsim's own runner (tests/seeds/jobs.py): seeds reported as failed
// with property "injected", and a seed whose worker process kills itself.
struct TestHooks {
  std::set<uint64_t> failSeeds;
  std::optional<uint64_t> crashSeed;
};
TestHooks testHooks;

RunResult runSeed(const Scenario& sc, const RunOptions& opts, bool inWorker) {
  RunResult r = kvr::sim::runScenario(sc, opts);
  if (testHooks.failSeeds.count(sc.seed) != 0) {
    r.ok = false;
    r.property = "injected";
    r.failedAtEvent = r.events;
    r.detail = "a failure injected by --test-fail-seeds";
  }
  if (inWorker && testHooks.crashSeed == sc.seed) raise(SIGKILL);
  return r;
}

// SIGTERM/SIGINT/SIGHUP (a time limit, Ctrl-C): say which seeds were running, so that a
// run stopped for taking too long names the seed that hangs.
volatile sig_atomic_t gStopSignal = 0;
volatile sig_atomic_t gParallel = 0;
std::atomic<uint64_t> gSerialSeed{0};
constexpr int kStopSignals[] = {SIGTERM, SIGINT, SIGHUP};

void appendNumber(char* buf, size_t* len, uint64_t v) {  // async-signal-safe
  char digits[24];
  size_t n = 0;
  do {
    digits[n++] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v != 0);
  while (n > 0) buf[(*len)++] = digits[--n];
}

void onStopSignal(int sig) {
  if (gParallel) {
    gStopSignal = sig;  // the parent's loop reports and stops
    return;
  }
  char buf[128];
  size_t len = 0;
  for (const char* t = "\nkvsim: stopped by signal "; *t; ++t) buf[len++] = *t;
  appendNumber(buf, &len, static_cast<uint64_t>(sig));
  for (const char* t = "; seeds running: "; *t; ++t) buf[len++] = *t;
  appendNumber(buf, &len, gSerialSeed.load());
  buf[len++] = '\n';
  ssize_t ignored = write(2, buf, len);
  (void)ignored;
  signal(sig, SIG_DFL);
  raise(sig);
}

void installStopHandlers() {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = onStopSignal;
  sigemptyset(&sa.sa_mask);
  for (int sig : kStopSignals) sigaction(sig, &sa, nullptr);
}

sigset_t stopSignalSet() {
  sigset_t set;
  sigemptyset(&set);
  for (int sig : kStopSignals) sigaddset(&set, sig);
  return set;
}

// Prints what a serial run prints for each seed, and keeps the totals.
class Reporter {
 public:
  Reporter(uint64_t first, uint64_t last, const ScenarioPins& pins, bool quiet)
      : first_(first),
        last_(last),
        pins_(pins),
        quiet_(quiet),
        start_(std::chrono::steady_clock::now()) {}

  // Seeds must be recorded in increasing order.
  void record(uint64_t seed, const Scenario& sc, const RunResult& r) {
    summary_.add(seed, r);
    if (!r.ok) {
      std::string replay = "build/bin/kvsim --seed " + std::to_string(seed) +
                           kvr::sim::pinFlags(pins_);
      fprintf(stderr,
              "VIOLATION %s at event %" PRIu64 " (seed %" PRIu64 ", %s)\n  %s\n  replay: %s\n",
              r.property.c_str(), r.failedAtEvent, seed, sc.describe().c_str(),
              r.detail.c_str(), replay.c_str());
    }
  }

  void progress(uint64_t seed) {
    if (quiet_ || first_ == last_ || !(summary_.runs % 10 == 0 || seed == last_)) return;
    fprintf(stderr, "\r%" PRIu64 "/%" PRIu64 " runs, %" PRIu64 " failed, %.1fs", summary_.runs,
            last_ - first_ + 1, summary_.failures, elapsed());
    if (seed == last_) fprintf(stderr, "\n");
  }

  double elapsed() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  }

  Summary& summary() { return summary_; }

 private:
  uint64_t first_, last_;
  ScenarioPins pins_;
  bool quiet_;
  std::chrono::steady_clock::time_point start_;
  Summary summary_;
};

// ---- the worker protocol: seeds go down as 8 bytes, RunResults come back as frames.

class Writer {
 public:
  void u64(uint64_t v) { buf_.append(reinterpret_cast<const char*>(&v), sizeof v); }
  void str(const std::string& s) {
    u64(s.size());
    buf_ += s;
  }
  const std::string& bytes() const { return buf_; }

 private:
  std::string buf_;
};

class ReaderBuf {
 public:
  explicit ReaderBuf(const std::string& b) : b_(b) {}
  uint64_t u64() {
    uint64_t v = 0;
    if (pos_ + sizeof v > b_.size()) {
      bad_ = true;
      return 0;
    }
    memcpy(&v, b_.data() + pos_, sizeof v);
    pos_ += sizeof v;
    return v;
  }
  std::string str() {
    uint64_t n = u64();
    if (bad_ || pos_ + n > b_.size()) {
      bad_ = true;
      return {};
    }
    std::string s = b_.substr(pos_, n);
    pos_ += n;
    return s;
  }
  bool ok() const { return !bad_ && pos_ == b_.size(); }

 private:
  const std::string& b_;
  size_t pos_ = 0;
  bool bad_ = false;
};

// Every field of RunResult: keep in step with sim/world.h.
std::string encodeResult(uint64_t seed, const RunResult& r) {
  Writer w;
  w.u64(seed);
  w.u64(r.ok ? 1 : 0);
  w.str(r.property);
  w.str(r.detail);
  for (uint64_t v :
       {r.failedAtEvent, r.simNs, r.events, r.traceHash, r.opsOk, r.opsFail, r.opsUnknown,
        r.messages, r.transfers, r.memberChanges, r.maxCommit, r.faultEvents, r.opsDrawn}) {
    w.u64(v);
  }
  for (uint64_t v : r.faults) w.u64(v);
  for (uint64_t v : r.probes) w.u64(v);
  return w.bytes();
}

bool decodeResult(const std::string& bytes, uint64_t* seed, RunResult* r) {
  ReaderBuf rd(bytes);
  *seed = rd.u64();
  r->ok = rd.u64() != 0;
  r->property = rd.str();
  r->detail = rd.str();
  for (uint64_t* v : {&r->failedAtEvent, &r->simNs, &r->events, &r->traceHash, &r->opsOk,
                      &r->opsFail, &r->opsUnknown, &r->messages, &r->transfers,
                      &r->memberChanges, &r->maxCommit, &r->faultEvents, &r->opsDrawn}) {
    *v = rd.u64();
  }
  for (uint64_t& v : r->faults) v = rd.u64();
  for (uint64_t& v : r->probes) v = rd.u64();
  return rd.ok();
}

bool writeAll(int fd, const void* data, size_t n) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    ssize_t k = write(fd, p, n);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return false;
    p += k;
    n -= static_cast<size_t>(k);
  }
  return true;
}

// False on end of file or error before n bytes.
bool readAll(int fd, void* data, size_t n) {
  char* p = static_cast<char*>(data);
  while (n > 0) {
    ssize_t k = read(fd, p, n);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return false;
    p += k;
    n -= static_cast<size_t>(k);
  }
  return true;
}

struct Worker {
  pid_t pid = -1;
  int taskFd = -1;    // parent writes seeds
  int resultFd = -1;  // parent reads frames
  std::deque<uint64_t> inFlight;
  bool broken = false;  // a write failed: send nothing more, wait for its end of file
};

[[noreturn]] void workerMain(int taskFd, int resultFd, const ScenarioPins& pins,
                             const RunOptions& opts) {
  signal(SIGPIPE, SIG_DFL);
  for (int sig : kStopSignals) signal(sig, SIG_DFL);
  sigset_t stops = stopSignalSet();
  sigprocmask(SIG_UNBLOCK, &stops, nullptr);
  for (;;) {
    uint64_t seed = 0;
    if (!readAll(taskFd, &seed, sizeof seed)) _exit(0);  // the parent closed: done
    Scenario sc = Scenario::draw(seed, pins);
    RunResult r = runSeed(sc, opts, true);
    std::string frame = encodeResult(seed, r);
    uint64_t n = frame.size();
    if (!writeAll(resultFd, &n, sizeof n) || !writeAll(resultFd, frame.data(), frame.size())) {
      _exit(1);
    }
  }
}

void startWorker(std::vector<Worker>& workers, size_t index, const ScenarioPins& pins,
                 const RunOptions& opts) {
  int task[2], result[2];
  if (pipe(task) != 0 || pipe(result) != 0) {
    perror("kvsim: pipe");
    exit(3);
  }
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  if (pid < 0) {
    perror("kvsim: fork");
    exit(3);
  }
  if (pid == 0) {
    // Only this worker's two ends stay open: another worker holding a task pipe would
    // keep its reader from ever seeing the end of file that tells it to stop.
    for (const Worker& w : workers) {
      if (w.taskFd >= 0) close(w.taskFd);
      if (w.resultFd >= 0) close(w.resultFd);
    }
    close(task[1]);
    close(result[0]);
    workerMain(task[0], result[1], pins, opts);
  }
  close(task[0]);
  close(result[1]);
  Worker& w = workers[index];
  w = Worker{};
  w.pid = pid;
  w.taskFd = task[1];
  w.resultFd = result[0];
}

std::string describeStatus(int status) {
  if (WIFSIGNALED(status)) {
    int sig = WTERMSIG(status);
    return "was killed by signal " + std::to_string(sig) + " (" + strsignal(sig) + ")";
  }
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  return "ended with status " + std::to_string(status);
}

// Reports the seeds the workers were running, ends them and dies of `sig`. Results that
// were waiting for an earlier seed are reported first (their violation lines), so that
// a run stopped behind one hung seed still shows what the seeds after it found.
[[noreturn]] void stopWorkers(std::vector<Worker>& workers, Reporter& reporter,
                              const std::map<uint64_t, RunResult>& early,
                              const ScenarioPins& pins, int sig) {
  for (const auto& [seed, r] : early) reporter.record(seed, Scenario::draw(seed, pins), r);
  std::vector<uint64_t> running;
  for (Worker& w : workers) {
    if (w.pid <= 0) continue;
    if (!w.inFlight.empty()) running.push_back(w.inFlight.front());
    kill(w.pid, SIGKILL);
    int status = 0;
    waitpid(w.pid, &status, 0);
  }
  std::sort(running.begin(), running.end());
  std::string list;
  for (uint64_t s : running) list += (list.empty() ? "" : ", ") + std::to_string(s);
  fprintf(stderr, "\nkvsim: stopped by signal %d after %" PRIu64 " seeds; seeds running: %s\n",
          sig, reporter.summary().runs, list.c_str());
  fflush(stderr);
  signal(sig, SIG_DFL);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, sig);
  sigprocmask(SIG_UNBLOCK, &set, nullptr);
  raise(sig);
  _exit(128 + sig);
}

// Runs first..last in `jobs` workers; reports in seed order.
void runParallel(uint64_t first, uint64_t last, uint32_t jobs, const ScenarioPins& pins,
                 const RunOptions& opts, Reporter& reporter) {
  constexpr size_t kInFlight = 2;
  signal(SIGPIPE, SIG_IGN);  // a worker that died shows up as an end of file instead
  // Stop signals are taken only inside ppoll, so none slips in between the check of
  // gStopSignal and the wait.
  sigset_t stops = stopSignalSet(), waitMask;
  sigprocmask(SIG_BLOCK, &stops, &waitMask);
  gParallel = 1;
  std::vector<Worker> workers(jobs);
  for (size_t i = 0; i < jobs; ++i) startWorker(workers, i, pins, opts);

  std::deque<uint64_t> retry;  // seeds handed to a worker that died before running them
  uint64_t nextSeed = first;
  bool rangeDone = false;  // every seed of the range was handed out once
  uint64_t emitSeed = first;
  std::map<uint64_t, RunResult> early;  // results waiting for their turn

  auto moreWork = [&]() { return !retry.empty() || !rangeDone; };
  auto takeSeed = [&]() {
    uint64_t s;
    if (!retry.empty()) {
      s = retry.front();
      retry.pop_front();
    } else {
      s = nextSeed;
      if (nextSeed == last) rangeDone = true;
      else ++nextSeed;
    }
    return s;
  };

  bool done = false;
  while (!done) {
    // Keep every worker busy.
    for (Worker& w : workers) {
      while (w.pid > 0 && !w.broken && w.inFlight.size() < kInFlight && moreWork()) {
        uint64_t s = takeSeed();
        if (!writeAll(w.taskFd, &s, sizeof s)) {
          w.broken = true;
          retry.push_front(s);
          break;
        }
        w.inFlight.push_back(s);
      }
    }
    std::vector<pollfd> fds;
    std::vector<size_t> owner;
    for (size_t i = 0; i < workers.size(); ++i) {
      if (workers[i].pid > 0) {
        fds.push_back(pollfd{workers[i].resultFd, POLLIN, 0});
        owner.push_back(i);
      }
    }
    if (fds.empty()) {
      fprintf(stderr, "kvsim: no workers left\n");
      exit(3);
    }
    int n = ppoll(fds.data(), fds.size(), nullptr, &waitMask);
    if (n < 0 && errno != EINTR) {
      perror("kvsim: poll");
      exit(3);
    }
    sigset_t pending;
    sigpending(&pending);
    for (int sig : kStopSignals) {
      if (sigismember(&pending, sig)) gStopSignal = sig;
    }
    if (gStopSignal != 0) stopWorkers(workers, reporter, early, pins, gStopSignal);
    if (n < 0) continue;
    for (size_t k = 0; k < fds.size(); ++k) {
      if (fds[k].revents == 0) continue;
      size_t i = owner[k];
      Worker& w = workers[i];
      uint64_t size = 0;
      std::string frame;
      bool got = readAll(w.resultFd, &size, sizeof size) && size < (1ull << 32);
      if (got) {
        frame.resize(size);
        got = readAll(w.resultFd, frame.data(), size);
      }
      uint64_t seed = 0;
      RunResult r;
      if (got && decodeResult(frame, &seed, &r) && !w.inFlight.empty() &&
          w.inFlight.front() == seed) {
        w.inFlight.pop_front();
        early.emplace(seed, std::move(r));
        continue;
      }
      // The worker is gone (or talks nonsense): its first seed in flight is the one it
      // was running. Fail that seed, hand the others to a new worker.
      close(w.taskFd);
      close(w.resultFd);
      int status = 0;
      kill(w.pid, SIGKILL);
      waitpid(w.pid, &status, 0);
      w.pid = -1;
      if (WIFSIGNALED(status)) {
        for (int sig : kStopSignals) {
          // Ctrl-C reaches the workers too: a stop, not a crash of the seed.
          if (WTERMSIG(status) == sig) {
            w.inFlight.clear();
            stopWorkers(workers, reporter, early, pins, sig);
          }
        }
      }
      if (!w.inFlight.empty()) {
        RunResult crash;
        crash.ok = false;
        crash.property = "crash";
        crash.detail = "the worker running this seed " + describeStatus(status) +
                       "; replay it alone (--jobs 1) to see where";
        early.emplace(w.inFlight.front(), std::move(crash));
        w.inFlight.pop_front();
        retry.insert(retry.begin(), w.inFlight.begin(), w.inFlight.end());
      }
      w = Worker{};
      if (moreWork()) startWorker(workers, i, pins, opts);
    }
    // Report whatever is next in seed order.
    for (auto it = early.find(emitSeed); !done && it != early.end();
         it = early.find(emitSeed)) {
      reporter.record(emitSeed, Scenario::draw(emitSeed, pins), it->second);
      reporter.progress(emitSeed);
      early.erase(it);
      if (emitSeed == last) done = true;
      else ++emitSeed;
    }
  }
  gParallel = 0;
  sigprocmask(SIG_SETMASK, &waitMask, nullptr);
  for (Worker& w : workers) {
    if (w.pid <= 0) continue;
    close(w.taskFd);  // end of file: the worker exits
    close(w.resultFd);
    int status = 0;
    waitpid(w.pid, &status, 0);
  }
}

bool readFile(const std::string& path, std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::ostringstream ss;
  ss << in.rdbuf();
  *out = ss.str();
  return !in.bad();
}

int mergeMain(const std::vector<std::string>& files) {
  if (files.empty()) usage("--merge wants one or more summary files");
  std::vector<kvr::sim::NamedSummary> shards;
  for (const std::string& f : files) {
    std::string text;
    if (!readFile(f, &text)) {
      fprintf(stderr, "kvsim: --merge: cannot read %s: %s\n", f.c_str(), strerror(errno));
      return 2;
    }
    kvr::sim::NamedSummary n;
    n.name = f;
    std::string error;
    if (!Summary::parse(kvr::sim::summaryObjectOf(text), &n.summary, &error)) {
      fprintf(stderr, "kvsim: --merge: %s: %s\n", f.c_str(), error.c_str());
      return 2;
    }
    shards.push_back(std::move(n));
  }
  Summary merged;
  std::string error;
  if (!kvr::sim::mergeSummaries(std::move(shards), &merged, &error)) {
    fprintf(stderr, "kvsim: --merge: %s\n", error.c_str());
    return 2;
  }
  printf("%s%s\n", merged.text().c_str(), merged.json().c_str());
  return merged.failures == 0 ? 0 : 1;
}

// The options every shrinking run shares: the test hooks, no output files.
RunOptions baseOpts(const RunOptions& opts) {
  RunOptions o;
  o.memStore = opts.memStore;
  o.testFailAfterFaults = opts.testFailAfterFaults;
  return o;
}

// --shrink: the scenario's parameters first (fewer nodes, clients, ops, keys, fault
// classes), then its schedule (fault events, operations); writes the replay file.
void shrinkMain(const Scenario& sc, const RunResult& r, uint64_t budget, std::string replayOut,
                const RunOptions& opts) {
  uint64_t scenarioBudget = budget / 3;
  kvr::sim::ShrinkResult s = kvr::sim::shrinkScenario(sc, r.property, scenarioBudget,
                                                      baseOpts(opts));
  fprintf(stderr, "  scenario shrunk in %" PRIu64 " runs to: %s\n", s.runs,
          s.scenario.describe().c_str());
  kvr::sim::ScheduleShrinkResult ss = kvr::sim::shrinkSchedule(s.scenario, r.property,
                                                               budget - s.runs, baseOpts(opts));
  fprintf(stderr,
          "  schedule shrunk in %" PRIu64 " runs: fault events %" PRIu64 " -> %" PRIu64
          ", operations %" PRIu64 " -> %" PRIu64 ", events %" PRIu64 " -> %" PRIu64
          " (the unshrunk run: %" PRIu64 " events)\n",
          ss.runs, ss.faultsBefore, ss.faultsAfter, ss.opsBefore, ss.opsAfter, ss.before.events,
          ss.after.events, r.events);
  kvr::sim::Replay replay;
  replay.seed = sc.seed;
  replay.pins = s.pins;
  replay.property = r.property;
  replay.schedule = ss.schedule;
  if (replayOut.empty()) replayOut = "kvsim-" + std::to_string(sc.seed) + ".replay";
  std::ofstream out(replayOut, std::ios::trunc);
  out << kvr::sim::formatReplay(replay);
  out.close();
  if (!out) {
    fprintf(stderr, "kvsim: cannot write %s\n", replayOut.c_str());
    exit(2);
  }
  fprintf(stderr, "  %s: %s\n  replay: build/bin/kvsim --replay %s [--timeline run.html]\n",
          r.property.c_str(), ss.after.detail.substr(0, ss.after.detail.find('\n')).c_str(),
          replayOut.c_str());
}

// --replay FILE: the file's scenario with its schedule; exit 1 when it fails (as the
// file says it should), 0 when it passes, 2 on a bad file.
int replayMain(const std::string& path, RunOptions opts) {
  std::string text, error;
  if (!readFile(path, &text)) {
    fprintf(stderr, "kvsim: cannot read %s\n", path.c_str());
    return 2;
  }
  kvr::sim::Replay replay;
  if (!kvr::sim::parseReplay(text, &replay, &error)) {
    fprintf(stderr, "kvsim: %s: %s\n", path.c_str(), error.c_str());
    return 2;
  }
  Scenario sc = Scenario::draw(replay.seed, replay.pins);
  opts.schedule = replay.schedule;
  RunResult r = kvr::sim::runScenario(sc, opts);
  uint64_t faults = 0, ops = 0;
  for (bool k : replay.schedule.keepFaults) faults += k ? 1 : 0;
  for (bool k : replay.schedule.keepOps) ops += k ? 1 : 0;
  printf("replay %s: %s  %s\n  fault events %" PRIu64 ", operations %" PRIu64
         ", events %" PRIu64 ", sim=%.3fs, trace=%016" PRIx64 "\n",
         path.c_str(), r.ok ? "ok" : ("VIOLATION " + r.property).c_str(), sc.describe().c_str(),
         faults, ops, r.events, static_cast<double>(r.simNs) / 1e9, r.traceHash);
  if (!r.ok) printf("%s\n", r.detail.c_str());
  if (r.ok || r.property != replay.property) {
    fprintf(stderr, "kvsim: the replay did not reproduce %s%s\n", replay.property.c_str(),
            r.ok ? "" : (" (it failed with " + r.property + ")").c_str());
  }
  return r.ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  uint64_t first = 0, last = 0;
  bool haveSeed = false, json = false, shrink = false, quiet = false, requireProbes = false;
  uint32_t jobs = 0;  // 0: the default
  bool merge = false;
  std::vector<std::string> mergeFiles;
  std::string replayPath, replayOut;
  uint64_t shrinkBudget = 1500;
  ScenarioPins pins;
  RunOptions opts;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> const char* {
      if (i + 1 >= argc) usage((a + " needs a value").c_str());
      return argv[++i];
    };
    if (a == "--seed") {
      first = last = parseU64("--seed", next());
      haveSeed = true;
    } else if (a == "--seeds") {
      std::string r = next();
      size_t dots = r.find("..");
      if (dots == std::string::npos) usage("--seeds wants A..B");
      first = parseU64("--seeds", r.substr(0, dots).c_str());
      last = parseU64("--seeds", r.substr(dots + 2).c_str());
      if (last < first) usage("--seeds wants A <= B");
      haveSeed = true;
    } else if (a == "--nodes") {
      pins.nodes = static_cast<uint32_t>(parseU64("--nodes", next()));
      if (*pins.nodes < 1 || *pins.nodes > 7) usage("--nodes must be 1..7");
    } else if (a == "--clients") {
      pins.clients = static_cast<uint32_t>(parseU64("--clients", next()));
      if (*pins.clients < 1 || *pins.clients > 256) usage("--clients must be 1..256");
    } else if (a == "--ops") {
      pins.ops = static_cast<uint32_t>(parseU64("--ops", next()));
      if (*pins.ops < 1 || *pins.ops > 1'000'000) usage("--ops must be 1..1000000");
    } else if (a == "--keys") {
      pins.keys = static_cast<uint32_t>(parseU64("--keys", next()));
      if (*pins.keys < 1 || *pins.keys > 100'000) usage("--keys must be 1..100000");
    } else if (a == "--faults") {
      kvr::sim::FaultSet fs;
      std::string error;
      if (!kvr::sim::FaultSet::parse(next(), &fs, &error)) usage(error.c_str());
      pins.faults = fs;
    } else if (a == "--membership") {
      std::string v = next();
      if (v != "on" && v != "off") usage("--membership wants on or off");
      pins.membership = v == "on";
    } else if (a == "--trace") {
      opts.tracePath = next();
    } else if (a == "--history") {
      opts.historyPath = next();
    } else if (a == "--timeline") {
      opts.timelinePath = next();
    } else if (a == "--mem-store") {
      opts.memStore = true;  // diagnosis: in-memory storage instead of the WAL code
    } else if (a == "--json") {
      json = true;
    } else if (a == "--shrink") {
      shrink = true;
    } else if (a == "--shrink-budget") {
      shrinkBudget = parseU64("--shrink-budget", next());
      if (shrinkBudget < 1 || shrinkBudget > 100'000)
        usage("--shrink-budget must be 1..100000");
    } else if (a == "--replay-out") {
      replayOut = next();
    } else if (a == "--replay") {
      replayPath = next();
    } else if (a == "--quiet") {
      quiet = true;
    } else if (a == "--require-probes") {
      requireProbes = true;
    } else if (a == "--jobs" || a == "-j") {
      uint64_t j = parseU64("--jobs", next());
      if (j < 1 || j > 1024) usage("--jobs must be 1..1024");
      jobs = static_cast<uint32_t>(j);
    } else if (a == "--merge") {
      merge = true;
      while (i + 1 < argc && strncmp(argv[i + 1], "--", 2) != 0)
        mergeFiles.push_back(argv[++i]);
    } else if (a == "--test-fail-seeds") {  // testing kvsim itself: see TestHooks
      std::stringstream list(next());
      for (std::string item; std::getline(list, item, ',');) {
        testHooks.failSeeds.insert(parseU64("--test-fail-seeds", item.c_str()));
      }
    } else if (a == "--test-fail-after-faults") {  // testing --shrink and --replay
      std::stringstream list(next());
      for (std::string item; std::getline(list, item, ',');) {
        opts.testFailAfterFaults.push_back(parseU64("--test-fail-after-faults", item.c_str()));
      }
    } else if (a == "--test-crash-seed") {  // testing --jobs: that seed's worker dies
      testHooks.crashSeed = parseU64("--test-crash-seed", next());
    } else if (a == "--help" || a == "-h") {
      usage(nullptr);
    } else {
      usage(("unknown flag " + a).c_str());
    }
  }
  if (merge) {
    if (haveSeed) usage("--merge takes no --seed/--seeds: the shards' summaries name them");
    return mergeMain(mergeFiles);
  }
  if (!replayPath.empty()) {
    if (haveSeed || shrink)
      usage("--replay takes no --seed, --seeds or --shrink: the file names them");
    return replayMain(replayPath, opts);
  }
  if (!haveSeed) usage("give --seed S or --seeds A..B");
  if (first != last &&
      (!opts.tracePath.empty() || !opts.historyPath.empty() || !opts.timelinePath.empty())) {
    usage("--trace, --history and --timeline take a single --seed");
  }
  if (jobs == 0) jobs = defaultJobs();
  if (shrink) jobs = 1;  // shrinking runs right after its violation, in order
  if (last - first + 1 < jobs) jobs = static_cast<uint32_t>(last - first + 1);

  installStopHandlers();
  Reporter reporter(first, last, pins, quiet);
  Summary& summary = reporter.summary();
  summary.pins = kvr::sim::pinFlags(pins) + (opts.memStore ? " --mem-store" : "");
  if (jobs > 1) {
    runParallel(first, last, jobs, pins, opts, reporter);
  } else {
    for (uint64_t seed = first;; ++seed) {
      gSerialSeed = seed;
      Scenario sc = Scenario::draw(seed, pins);
      RunResult r = runSeed(sc, opts, false);
      reporter.record(seed, sc, r);
      if (!r.ok && shrink) shrinkMain(sc, r, shrinkBudget, replayOut, opts);
      if (first == last && !quiet) {
        printf("seed %" PRIu64 ": %s  %s\n  ops ok=%" PRIu64 " fail=%" PRIu64
               " unknown=%" PRIu64 "  commit=%" PRIu64 "  events=%" PRIu64
               "  sim=%.3fs  trace=%016" PRIx64 "\n",
               seed, r.ok ? "ok" : "FAILED", sc.describe().c_str(), r.opsOk, r.opsFail,
               r.opsUnknown, r.maxCommit, r.events, static_cast<double>(r.simNs) / 1e9,
               r.traceHash);
      }
      reporter.progress(seed);
      if (seed == last) break;  // also when last is the largest uint64_t
    }
  }
  summary.wallSeconds = reporter.elapsed();
  fputs(summary.text().c_str(), stdout);
  if (json) printf("%s\n", summary.json().c_str());
  std::string missed = summary.missedProbes();
  if (requireProbes && !missed.empty()) {
    // A path of the core that no seed in the range takes is a rule the range does not
    // test: grow the nemesis (or the range) until it does.
    fprintf(stderr, "kvsim: coverage probes no seed reached: %s\n", missed.c_str());
    return 1;
  }
  return summary.failures == 0 ? 0 : 1;
}

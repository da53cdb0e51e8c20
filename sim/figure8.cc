// The Figure 8 story (Raft paper, Figure 8), driven step by step instead of hoped for:
//
//   (a) a new leader L takes office cut off from everyone (its no-op and the client
//       writes it takes stay in its own log) and crashes once they are durable;
//   (b) the others elect a rival R, which is cut off the same way (its no-op, of a
//       later term, sits where L's entries sit) and crashes;
//   (c) L restarts with a bare majority of witnesses (f nodes whose logs end before L's
//       term): only L can win there. As leader it sends its old-term entries but none
//       of its own term (the network drops those: the entries of an Append past the
//       old term never arrive), and crashes once they commit or after a while;
//   (d) R restarts with the same witnesses: its last term beats theirs, so only R can
//       win, and it overwrites L's old-term entries.
//
// A leader that commits an older term's entry by counting replicas commits L's entries
// at (c), and R leads at (d) without them (leader completeness). With the rule, nothing
// past the old commit index commits at (c), and (d) is an ordinary overwrite.
//
// About a third of the seeds with the isolate_leader class, at least three nodes and no
// membership changes tell the story, at most kFig8MaxTries times a run; its draws come
// from a stream of its own, so the other draws of every seed stay what they were. While
// it plays no other fault is injected (calm weather).
#include <kj/debug.h>

#include "sim/world_impl.h"

namespace kvr::sim {

namespace {
constexpr double kFig8Share = 0.35;
constexpr uint32_t kFig8MaxTries = 8;
}  // namespace

void World::retryStory(uint32_t& tries, uint32_t maxTries, Rng& rng, uint64_t delay,
                       bool (World::*start)()) {
  if (tries >= maxTries) return;
  ++tries;
  q_.after(delay, [this, &tries, maxTries, &rng, start]() {
    if (!chaos_ || stop_) return;
    if (!(this->*start)()) {
      retryStory(tries, maxTries, rng, rng.between(100 * kMs, 1000 * kMs), start);
    }
  });
}

void World::scheduleFigure8(uint64_t delay) {
  retryStory(fig8_.tries, kFig8MaxTries, fig8Rng_, delay, &World::startFigure8);
}

World::Node* World::figure8Node(NodeId id, const char* ifDown) {
  Node& n = node(id);
  if (n.up) return &n;
  endFigure8(ifDown);
  return nullptr;
}

bool World::figure8Enabled() {
  bool drawn = fig8Rng_.chance(kFig8Share);
  return drawn && sc_.nodes >= 3 && sc_.faults.has(Fault::IsolateLeader) && !sc_.membership();
}

uint64_t World::figure8PhaseBudget() const {
  // Generous: pre-vote, the lease and split votes may take several election rounds.
  return 30 * 2 * sc_.electionTicks * kTickNs;
}

void World::cutOffEach(const std::vector<NodeId>& cut) {
  ++partitionGen_;  // pending heals of earlier partitions no longer apply
  std::vector<bool> alone(slots() + 1, false);
  for (NodeId id : cut) alone[id] = true;
  for (uint32_t a = 1; a <= slots(); ++a)
    for (uint32_t b = 1; b <= slots(); ++b) blocked_[a][b] = a != b && (alone[a] || alone[b]);
}

void World::onlyGroup(const std::vector<NodeId>& group) {
  ++partitionGen_;
  std::vector<bool> in(slots() + 1, false);
  for (NodeId id : group) in[id] = true;
  for (uint32_t a = 1; a <= slots(); ++a)
    for (uint32_t b = 1; b <= slots(); ++b) blocked_[a][b] = in[a] != in[b];
}

NodeId World::storyLeader() const {
  if (fig8_.phase != Fig8::Off || suffix_.phase != Suffix::Off || q_.now() < nemesisUntil_ ||
      q_.now() < flakyUntil_) {
    return kNoNode;
  }
  for (uint32_t id = 1; id <= sc_.nodes; ++id) {
    const Node& n = nodes_[id - 1];
    if (!n.up || n.dead || n.replica->raft().recovering()) return kNoNode;
  }
  return currentLeader();
}

bool World::startFigure8() {
  NodeId p = storyLeader();
  if (p == kNoNode) return false;
  count(Fault::IsolateLeader);
  uint32_t tries = fig8_.tries;
  fig8_ = Fig8{};
  fig8_.phase = Fig8::Depose;
  fig8_.tries = tries;
  fig8_.termP = node(p).replica->raft().term();
  fig8_.storyUntil = q_.now() + 6 * figure8PhaseBudget();
  fig8_.phaseUntil = q_.now() + figure8PhaseBudget();
  nemesisUntil_ = calmUntil_ = fig8_.storyUntil;
  cutOffEach({p});
  trace(kj::str("figure 8: leader n", p, " cut off, the others elect").cStr());
  return true;
}

void World::endFigure8(const char* how) {
  trace(kj::str("figure 8: ", how).cStr());
  fig8_.phase = Fig8::Off;
  unblockAll();
  ++partitionGen_;
  nemesisUntil_ = calmUntil_ = q_.now();
  for (NodeId id : {fig8_.l, fig8_.r}) {
    if (id == kNoNode) continue;
    Node& n = node(id);
    if (!n.up && !n.dead) startNode(n);
  }
  scheduleFigure8(fig8Rng_.between(500 * kMs, 5000 * kMs));
}

NodeId World::newLeaderAbove(Term term, NodeId except) const {
  for (auto& n : nodes_) {
    if (n.up && n.id != except && n.replica->raft().role() == Role::Leader &&
        n.replica->raft().term() > term) {
      return n.id;
    }
  }
  return kNoNode;
}

void World::stripOwnTermEntries(Message& msg) {
  // (c): the Append arrives without the leader's own-term entries (the suffix of its
  // entries): the follower sees what a leader that sent less would have sent.
  if (fig8_.phase != Fig8::Return || msg.type != MsgType::Append) return;
  auto& es = msg.entries;
  while (!es.empty() && es.back().term == msg.term) es.pop_back();
}

void World::figure8Step() {
  if (!chaos_) {
    fig8_.phase = Fig8::Off;  // healAll took over
    return;
  }
  if (q_.now() > fig8_.phaseUntil || q_.now() > fig8_.storyUntil) {
    endFigure8("timed out");
    return;
  }
  auto nextPhase = [this](Fig8::Phase ph) {
    fig8_.phase = ph;
    fig8_.phaseUntil = q_.now() + figure8PhaseBudget();
  };
  switch (fig8_.phase) {
    case Fig8::Off: return;
    case Fig8::Depose: {
      NodeId l = newLeaderAbove(fig8_.termP, kNoNode);
      if (l == kNoNode) return;
      fig8_.l = l;
      fig8_.termA = node(l).replica->raft().term();
      // (a) Cut off as it takes office: what it sent is lost in flight.
      cutOffEach({l});
      for (auto& c : clients_) c.target = l;
      fig8_.holdUntil = q_.now() +
                        fig8Rng_.between(1 * kMs,
                                         std::max<uint64_t>(2 * kMs,
                                                            sc_.electionTicks * kTickNs / 2));
      trace(kj::str("figure 8 (a): n", l, " leads term ", fig8_.termA, " alone").cStr());
      nextPhase(Fig8::OldLeader);
      return;
    }
    case Fig8::OldLeader: {
      Node* ln = figure8Node(fig8_.l, "the old leader went down early");
      if (ln == nullptr) return;
      const Raft& r = ln->replica->raft();
      if (q_.now() < fig8_.holdUntil || r.stableIndex() < r.lastIndex()) return;
      fig8_.firstA = 0;
      for (Index i = r.commitIndex() + 1; i <= r.lastIndex(); ++i) {
        const Entry* e = r.entryAt(i);
        if (e != nullptr && e->term == fig8_.termA) {
          fig8_.firstA = i;
          break;
        }
      }
      if (fig8_.firstA == 0 || r.lastTerm() != fig8_.termA) {
        endFigure8("the old leader holds no entry of its term");
        return;
      }
      crashNode(*ln, "figure 8 (a)");
      nextPhase(Fig8::Rival);
      return;
    }
    case Fig8::Rival: {
      NodeId rv = newLeaderAbove(fig8_.termA, fig8_.l);
      if (rv == kNoNode) return;
      fig8_.r = rv;
      fig8_.termB = node(rv).replica->raft().term();
      cutOffEach({fig8_.l, rv});  // (b) the rival too takes office alone
      trace(kj::str("figure 8 (b): n", rv, " leads term ", fig8_.termB, " alone").cStr());
      nextPhase(Fig8::RivalLeads);
      return;
    }
    case Fig8::RivalLeads: {
      Node* rn = figure8Node(fig8_.r, "the rival went down early");
      if (rn == nullptr) return;
      const Raft& r = rn->replica->raft();
      if (r.stableIndex() < r.lastIndex() || r.lastTerm() != fig8_.termB) return;
      crashNode(*rn, "figure 8 (b)");
      // (c) Witnesses: f nodes whose logs end before the old leader's term.
      std::vector<NodeId> pool;
      for (uint32_t id = 1; id <= sc_.nodes; ++id) {
        const Node& n = node(id);
        if (id == fig8_.l || id == fig8_.r || !n.up || n.replica->raft().recovering()) continue;
        if (n.replica->raft().lastTerm() < fig8_.termA) pool.push_back(id);
      }
      size_t f = (sc_.nodes - 1) / 2;
      if (pool.size() < f) {
        endFigure8("too few witnesses");
        return;
      }
      fig8_.witnesses.clear();
      while (fig8_.witnesses.size() < f) {
        size_t k = fig8Rng_.below(pool.size());
        fig8_.witnesses.push_back(pool[k]);
        pool.erase(pool.begin() + static_cast<std::ptrdiff_t>(k));
      }
      std::vector<NodeId> group = fig8_.witnesses;
      group.push_back(fig8_.l);
      onlyGroup(group);
      Node& ln = node(fig8_.l);
      if (!ln.up && !ln.dead) startNode(ln);
      trace(kj::str("figure 8 (c): n", fig8_.l, " back with ", f, " witnesses").cStr());
      nextPhase(Fig8::Return);
      return;
    }
    case Fig8::Return: {
      Node* ln = figure8Node(fig8_.l, "the old leader went down in (c)");
      if (ln == nullptr) return;
      const Raft& r = ln->replica->raft();
      if (r.role() != Role::Leader || r.term() <= fig8_.termB) return;
      if (fig8_.termC != r.term()) {
        fig8_.termC = r.term();
        fig8_.holdUntil = q_.now() + fig8Rng_.between(100 * kMs, 500 * kMs);
      }
      if (r.commitIndex() < fig8_.firstA && q_.now() < fig8_.holdUntil) return;
      trace(kj::str("figure 8 (c): n", fig8_.l, " leads term ", fig8_.termC, ", commit ",
                    r.commitIndex())
                .cStr());
      crashNode(*ln, "figure 8 (c)");
      // (d) The rival with the same witnesses.
      std::vector<NodeId> group = fig8_.witnesses;
      group.push_back(fig8_.r);
      onlyGroup(group);
      Node& rn = node(fig8_.r);
      if (!rn.up && !rn.dead) startNode(rn);
      nextPhase(Fig8::Overwrite);
      return;
    }
    case Fig8::Overwrite: {
      NodeId rv = newLeaderAbove(fig8_.termC, kNoNode);
      if (rv == kNoNode) return;
      trace(kj::str("figure 8 (d): n", rv, " leads term ", node(rv).replica->raft().term())
                .cStr());
      endFigure8("done");
      return;
    }
  }
}

}  // namespace kvr::sim

// Runs every tests/raft/interaction/testdata/*.txt through the interaction environment
// and compares each command's output with the expected block below it. One gtest case
// per file. REWRITE=1 in the environment writes the actual output back into the files.
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "tests/raft/interaction/datadriven.h"
#include "tests/raft/interaction/interaction_env.h"

#ifndef KVR_INTERACTION_TESTDATA
#error "KVR_INTERACTION_TESTDATA must name the testdata directory"
#endif

namespace kvr::test {
namespace {

std::string testdataDir() {
  const char* env = std::getenv("INTERACTION_TESTDATA");
  return env != nullptr && *env != '\0' ? env : KVR_INTERACTION_TESTDATA;
}

bool rewriteMode() {
  const char* env = std::getenv("REWRITE");
  return env != nullptr && *env != '\0' && std::string(env) != "0";
}

std::vector<std::string> testFiles() {
  std::vector<std::string> files;
  std::error_code ec;
  for (auto& e : std::filesystem::directory_iterator(testdataDir(), ec)) {
    if (e.is_regular_file() && e.path().extension() == ".txt")
      files.push_back(e.path().filename());
  }
  std::sort(files.begin(), files.end());
  return files;
}

class Interaction : public ::testing::TestWithParam<std::string> {};

TEST_P(Interaction, MatchesGoldenFile) {
  const std::string path = testdataDir() + "/" + GetParam();
  InteractionEnv env;
  dd::FileResult r = dd::runFile(path, [&env](const dd::Command& c) { return env.handle(c); });
  if (rewriteMode()) {
    if (r.changed) {
      std::ofstream out(path, std::ios::binary | std::ios::trunc);
      out << r.rewritten;
      ASSERT_TRUE(out.good()) << "cannot write " << path;
      std::cout << "rewrote " << path << "\n";
    }
    return;
  }
  for (auto& f : r.failures) ADD_FAILURE() << f;
  if (!r.failures.empty()) {
    ADD_FAILURE() << path << ": " << r.failures.size()
                  << " command(s) differ; if the new output is right, rerun with REWRITE=1 "
                     "and review the diff of the file";
  }
}

std::string caseName(const ::testing::TestParamInfo<std::string>& info) {
  std::string name = info.param.substr(0, info.param.size() - 4);  // without ".txt"
  for (char& ch : name) {
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  }
  return name;
}

INSTANTIATE_TEST_SUITE_P(Testdata, Interaction, ::testing::ValuesIn(testFiles()), caseName);

TEST(InteractionHarness, FindsTheTestdata) {
  EXPECT_GE(testFiles().size(), 10u) << "no scenario files under " << testdataDir();
}

TEST(InteractionHarness, RewriteFillsInAndKeepsComments) {
  const std::string path = ::testing::TempDir() + "/interaction_rewrite.txt";
  {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f << "# a comment\n\necho one\n\n\n# another\necho two\n----\nstale\n\necho\n";
  }
  auto echo = [](const dd::Command& c) {
    std::string out;
    for (auto& p : c.positional) out += p + "\n";
    return out;
  };
  dd::FileResult r = dd::runFile(path, echo);
  EXPECT_EQ(r.failures.size(), 3u) << "two commands without expected output, one stale";
  EXPECT_EQ(r.rewritten,
            "# a comment\n\necho one\n----\none\n\n\n# another\necho two\n----\ntwo\n\n"
            "echo\n----\nok\n");
  std::ofstream(path, std::ios::binary | std::ios::trunc) << r.rewritten;
  dd::FileResult again = dd::runFile(path, echo);
  EXPECT_TRUE(again.failures.empty());
  EXPECT_FALSE(again.changed);
}

TEST(InteractionHarness, DiffMarksChangedLines) {
  EXPECT_EQ(dd::lineDiff("a\nb\nc", "a\nx\nc"), "  a\n- b\n+ x\n  c\n");
}

}  // namespace
}  // namespace kvr::test

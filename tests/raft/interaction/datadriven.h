// A small data-driven test file format: commands, each followed by its expected output.
//
//   # comment lines and blank lines are kept as they are
//   command arg key=value key=v1,v2
//   ----
//   expected output, one or more lines
//   (ends at the first blank line or at the end of the file)
//
// The runner executes every command in order, compares its output with the expected
// block and reports a line diff for each mismatch. In rewrite mode it writes the file
// back with the actual output instead. A command written without "----" has no
// expected output yet (fails, or gets one in rewrite mode), so a new scenario can be
// written as bare commands and filled in with REWRITE=1.
#pragma once

#include <functional>
#include <string>
#include <vector>

namespace kvr::test::dd {

struct Command {
  std::string file;
  int line = 0;      // 1-based line of the command in its file
  std::string text;  // the command line as written
  std::string name;  // first word
  std::vector<std::string> positional;
  std::vector<std::pair<std::string, std::string>> options;  // key=value, in order
  bool hasExpected = false;
  std::string expected;  // without the trailing newline

  // The value of option `key`, or nullptr.
  const std::string* option(const std::string& key) const;
};

// What one file produced: the mismatches (readable, with diffs) and the rewritten text.
struct FileResult {
  std::vector<std::string> failures;
  std::string rewritten;
  bool changed = false;  // rewritten differs from the file
};

// Runs every command of `path` through `run` (which returns the command's output; an
// empty output is recorded as "ok"). Output lines must not be blank.
FileResult runFile(const std::string& path,
                   const std::function<std::string(const Command&)>& run);

// Line diff of two texts: "  same", "- expected", "+ actual".
std::string lineDiff(const std::string& expected, const std::string& actual);

// Splits on single spaces and tabs.
std::vector<std::string> splitWords(const std::string& line);
// Splits on `sep`, keeping empty pieces.
std::vector<std::string> split(const std::string& s, char sep);

}  // namespace kvr::test::dd

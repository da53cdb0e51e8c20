#include "tests/raft/interaction/datadriven.h"

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <sstream>
#include <variant>

namespace kvr::test::dd {

const std::string* Command::option(const std::string& key) const {
  for (auto& [k, v] : options) {
    if (k == key) return &v;
  }
  return nullptr;
}

std::vector<std::string> splitWords(const std::string& line) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : line) {
    if (c == ' ' || c == '\t') {
      if (!cur.empty()) out.push_back(std::move(cur));
      cur.clear();
    } else {
      cur.push_back(c);
    }
  }
  if (!cur.empty()) out.push_back(std::move(cur));
  return out;
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : s) {
    if (c == sep) {
      out.push_back(std::move(cur));
      cur.clear();
    } else {
      cur.push_back(c);
    }
  }
  out.push_back(std::move(cur));
  return out;
}

namespace {

std::vector<std::string> lines(const std::string& text) {
  if (text.empty()) return {};
  std::vector<std::string> out = split(text, '\n');
  if (!out.empty() && out.back().empty()) out.pop_back();  // the final newline
  return out;
}

Command parseCommand(const std::string& file, int line, const std::string& text) {
  Command c;
  c.file = file;
  c.line = line;
  c.text = text;
  std::vector<std::string> words = splitWords(text);
  c.name = words.empty() ? "" : words[0];
  for (size_t i = 1; i < words.size(); ++i) {
    size_t eq = words[i].find('=');
    if (eq == std::string::npos) {
      c.positional.push_back(words[i]);
    } else {
      c.options.emplace_back(words[i].substr(0, eq), words[i].substr(eq + 1));
    }
  }
  return c;
}

using Item = std::variant<std::string, Command>;  // a kept line, or a command

std::vector<Item> parse(const std::string& path, const std::string& text) {
  std::vector<std::string> ls = lines(text);
  std::vector<Item> items;
  size_t i = 0;
  while (i < ls.size()) {
    const std::string& l = ls[i];
    if (l.empty() || l[0] == '#') {
      items.emplace_back(l);
      ++i;
      continue;
    }
    Command c = parseCommand(path, static_cast<int>(i + 1), l);
    ++i;
    if (i < ls.size() && ls[i] == "----") {
      ++i;
      c.hasExpected = true;
      std::string expected;
      while (i < ls.size() && !ls[i].empty()) {
        if (!expected.empty()) expected += '\n';
        expected += ls[i];
        ++i;
      }
      c.expected = std::move(expected);
    }
    if (i < ls.size() && ls[i].empty()) ++i;  // the blank line that ends a command
    items.emplace_back(std::move(c));
  }
  return items;
}

std::string normalize(std::string out) {
  while (!out.empty() && out.back() == '\n') out.pop_back();
  if (out.empty()) return "ok";
  // A blank line would end the block when the file is read back.
  std::string fixed;
  for (auto& l : lines(out)) {
    if (!fixed.empty()) fixed += '\n';
    fixed += l.empty() ? "." : l;
  }
  return fixed;
}

}  // namespace

std::string lineDiff(const std::string& expected, const std::string& actual) {
  std::vector<std::string> a = lines(expected), b = lines(actual);
  const size_t n = a.size(), m = b.size();
  // Longest common subsequence table, from the back.
  std::vector<std::vector<uint32_t>> lcs(n + 1, std::vector<uint32_t>(m + 1, 0));
  for (size_t i = n; i-- > 0;) {
    for (size_t j = m; j-- > 0;) {
      lcs[i][j] = a[i] == b[j] ? lcs[i + 1][j + 1] + 1 : std::max(lcs[i + 1][j], lcs[i][j + 1]);
    }
  }
  std::string out;
  size_t i = 0, j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && a[i] == b[j]) {
      out += "  " + a[i] + "\n";
      ++i;
      ++j;
    } else if (i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1])) {
      out += "- " + a[i] + "\n";
      ++i;
    } else {
      out += "+ " + b[j] + "\n";
      ++j;
    }
  }
  return out;
}

FileResult runFile(const std::string& path,
                   const std::function<std::string(const Command&)>& run) {
  FileResult result;
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    result.failures.push_back(path + ": cannot read");
    return result;
  }
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string original = ss.str();
  std::vector<Item> items = parse(path, original);

  std::string out;
  for (size_t k = 0; k < items.size(); ++k) {
    if (auto* kept = std::get_if<std::string>(&items[k])) {
      out += *kept + "\n";
      continue;
    }
    const Command& c = std::get<Command>(items[k]);
    std::string actual = normalize(run(c));
    if (!c.hasExpected) {
      result.failures.push_back(path + ":" + std::to_string(c.line) + ": " + c.text +
                                "\nno expected output yet; actual output:\n" + actual + "\n");
    } else if (actual != c.expected) {
      result.failures.push_back(path + ":" + std::to_string(c.line) + ": " + c.text +
                                "\noutput differs (- expected, + actual):\n" +
                                lineDiff(c.expected, actual));
    }
    out += c.text + "\n----\n" + actual + "\n";
    if (k + 1 < items.size()) out += "\n";
  }
  result.rewritten = out;
  result.changed = out != original;
  return result;
}

}  // namespace kvr::test::dd

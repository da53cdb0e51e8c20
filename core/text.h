// Text helpers shared by the binaries (bin/), the simulator (sim/) and disk/: quoting byte
// strings and parsing numbers. Standard library only.
#pragma once

#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>

namespace kvr::text {

enum class Quote {
  // A JSON string: '"', '\\', \n, \r, \t, \b and \f take their short escapes; every other
  // byte below 0x20 or above 0x7e is \u00XX (the code point equal to the byte), so any
  // bytes round-trip and the output is plain ASCII.
  Json,
  // For people (logs, explanations): '"' and '\\' are backslash-escaped, printable ASCII
  // stays as it is, every other byte is \xNN.
  Human,
};

// Appends `s` between double quotes.
void appendQuoted(std::string& out, std::string_view s, Quote style);
std::string quoted(std::string_view s, Quote style);

enum class NumberError { None, NotANumber, TooLarge };

// A plain decimal number: one or more digits, nothing else (no sign, space or prefix),
// at most `max`. Sets *out only on success.
NumberError parseUnsigned(std::string_view text, uint64_t* out,
                          uint64_t max = std::numeric_limits<uint64_t>::max());

// Exactly 16 lowercase hex digits (the fixed-width names of WAL segments and snapshot
// files), nothing else.
std::optional<uint64_t> parseHex16(std::string_view text);

}  // namespace kvr::text

#include "cli/flag_parser.h"

#include <cmath>
#include <iostream>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace jamba {
namespace {

absl::Status BadValue(const std::string& flag, absl::string_view value, absl::string_view want) {
  return absl::InvalidArgumentError(
      absl::StrCat("--", flag, ": expected ", want, ", got '", value, "'"));
}

// Breaks `text` into lines of at most `width` columns, continuation lines indented by `indent`
// (the first line starts at column `indent` already).
std::string WrapText(const std::string& text, size_t indent, size_t width) {
  std::string out;
  size_t column = indent;
  for (absl::string_view word : absl::StrSplit(text, ' ', absl::SkipEmpty())) {
    if (column > indent && column + 1 + word.size() > width) {
      out += "\n" + std::string(indent, ' ');
      column = indent;
    } else if (column > indent) {
      out += ' ';
      ++column;
    }
    absl::StrAppend(&out, word);
    column += word.size();
  }
  return out;
}

}  // namespace

FlagParser::Flag FlagParser::MakeFlag(std::string name, std::string value_name, std::string help,
                                      std::string section, std::string default_text) {
  Flag f;
  f.name = std::move(name);
  f.value_name = std::move(value_name);
  f.help = std::move(help);
  f.section = std::move(section);
  f.default_text = std::move(default_text);
  return f;
}

void FlagParser::Add(Flag flag) { flags_.push_back(std::move(flag)); }

FlagParser::Flag* FlagParser::Find(absl::string_view name) {
  for (Flag& f : flags_) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

bool FlagParser::Seen(const std::string& name) const {
  for (const Flag& f : flags_) {
    if (f.name == name) return f.seen;
  }
  return false;
}

void FlagParser::String(const std::string& name, std::string* target, const std::string& help,
                        const std::string& section, const std::string& value_name) {
  Flag f = MakeFlag(name, value_name, help, section, target->empty() ? "" : *target);
  f.set = [target](absl::string_view v) {
    *target = std::string(v);
    return absl::OkStatus();
  };
  Add(std::move(f));
}

void FlagParser::Int(const std::string& name, int64_t* target, const std::string& help,
                     const std::string& section) {
  Flag f = MakeFlag(name, "N", help, section, absl::StrCat(*target));
  f.set = [name, target](absl::string_view v) {
    if (!absl::SimpleAtoi(v, target)) return BadValue(name, v, "an integer");
    return absl::OkStatus();
  };
  Add(std::move(f));
}

void FlagParser::Int32(const std::string& name, int32_t* target, const std::string& help,
                       const std::string& section) {
  Flag f = MakeFlag(name, "N", help, section, absl::StrCat(*target));
  f.set = [name, target](absl::string_view v) {
    if (!absl::SimpleAtoi(v, target)) return BadValue(name, v, "a 32-bit integer");
    return absl::OkStatus();
  };
  Add(std::move(f));
}

void FlagParser::Float(const std::string& name, float* target, const std::string& help,
                       const std::string& section) {
  Flag f = MakeFlag(name, "X", help, section, absl::StrCat(*target));
  f.set = [name, target](absl::string_view v) {
    float x = 0;
    if (!absl::SimpleAtof(v, &x) || !std::isfinite(x)) return BadValue(name, v, "a number");
    *target = x;
    return absl::OkStatus();
  };
  Add(std::move(f));
}

void FlagParser::Bool(const std::string& name, bool* target, const std::string& help,
                      const std::string& section) {
  Flag f = MakeFlag(name, "", help, section, "");
  f.takes_value = false;
  f.set = [target](absl::string_view) {
    *target = true;
    return absl::OkStatus();
  };
  Add(std::move(f));
}

void FlagParser::Repeated(const std::string& name,
                          std::function<absl::Status(absl::string_view)> append,
                          const std::string& value_name, const std::string& help,
                          const std::string& section) {
  Flag f = MakeFlag(name, value_name, help + " (repeatable)", section, "");
  f.set = std::move(append);
  Add(std::move(f));
}

void FlagParser::Custom(const std::string& name, std::function<absl::Status(absl::string_view)> set,
                        const std::string& value_name, const std::string& help,
                        const std::string& section) {
  Flag f = MakeFlag(name, value_name, help, section, "");
  f.set = std::move(set);
  Add(std::move(f));
}

absl::Status FlagParser::Parse(int argc, const char* const* argv, int first,
                               std::vector<std::string>* positional) {
  for (int i = first; i < argc; ++i) {
    absl::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      help_requested_ = true;
      return absl::OkStatus();
    }
    if (arg == "--") {
      for (++i; i < argc; ++i) {
        if (positional == nullptr) {
          return absl::InvalidArgumentError(absl::StrCat("unexpected argument '", argv[i], "'"));
        }
        positional->push_back(argv[i]);
      }
      break;
    }
    if (arg.size() < 3 || arg.substr(0, 2) != "--") {
      if (positional == nullptr) {
        return absl::InvalidArgumentError(absl::StrCat("unexpected argument '", arg,
                                                       "' (flags start with --; see --help)"));
      }
      positional->push_back(std::string(arg));
      continue;
    }
    absl::string_view body = arg.substr(2);
    absl::string_view name = body, value;
    bool has_value = false;
    if (size_t eq = body.find('='); eq != absl::string_view::npos) {
      name = body.substr(0, eq);
      value = body.substr(eq + 1);
      has_value = true;
    }
    Flag* flag = Find(name);
    if (flag == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown flag --", name, " (see --help)"));
    }
    if (!flag->takes_value) {
      if (has_value) {
        return absl::InvalidArgumentError(absl::StrCat("--", name, " takes no value"));
      }
    } else if (!has_value) {
      if (i + 1 >= argc) {
        return absl::InvalidArgumentError(
            absl::StrCat("--", name, " needs a value (", flag->value_name, ")"));
      }
      value = argv[++i];
    }
    if (absl::Status s = flag->set(value); !s.ok()) return s;
    flag->seen = true;
  }
  return absl::OkStatus();
}

absl::optional<int> FlagParser::ParseMain(int argc, const char* const* argv,
                                          const std::string& program) {
  if (absl::Status s = Parse(argc, argv, 1); !s.ok()) {
    std::cerr << program << ": " << s.message() << "\n";
    return 2;
  }
  if (help_requested_) {
    std::cout << Help();
    return 0;
  }
  return absl::nullopt;
}

std::string FlagParser::Help() const {
  std::string out = absl::StrCat("Usage: ", usage_, "\n\n", description_, "\n");
  std::vector<std::string> sections;
  for (const Flag& f : flags_) {
    bool known = false;
    for (const auto& s : sections) known = known || s == f.section;
    if (!known) sections.push_back(f.section);
  }
  for (const std::string& section : sections) {
    absl::StrAppend(&out, "\n", section.empty() ? "Options" : section, ":\n");
    for (const Flag& f : flags_) {
      if (f.section != section) continue;
      std::string left = absl::StrCat("  --", f.name);
      if (f.takes_value) absl::StrAppend(&left, " ", f.value_name);
      if (left.size() < 28) {
        left.resize(28, ' ');
      } else {
        left += "\n" + std::string(28, ' ');
      }
      std::string text = f.help;
      if (!f.default_text.empty()) absl::StrAppend(&text, " [default: ", f.default_text, "]");
      absl::StrAppend(&out, left, WrapText(text, 28, 100), "\n");
    }
  }
  absl::StrAppend(&out, "\n  --help                    print this help and exit\n");
  return out;
}

absl::Status ParseIdList(absl::string_view text, const std::string& flag,
                         std::vector<int32_t>* out) {
  out->clear();
  for (absl::string_view item : absl::StrSplit(text, ',')) {
    item = absl::StripAsciiWhitespace(item);
    int32_t id = 0;
    if (item.empty() || !absl::SimpleAtoi(item, &id)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--", flag, ": '", item, "' is not an integer token id"));
    }
    out->push_back(id);
  }
  return absl::OkStatus();
}

}  // namespace jamba

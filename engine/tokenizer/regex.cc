#include "engine/tokenizer/regex.h"

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/tokenizer/unicode.h"
#include "engine/tokenizer/utf8.h"

namespace jamba {
namespace {

constexpr size_t kNoMatch = static_cast<size_t>(-1);
constexpr int kUnbounded = -1;
constexpr size_t kMaxProgramSize = 1 << 16;

struct Node {
  enum class Kind { kClass, kConcat, kAlt, kRepeat, kLookahead };
  Kind kind;
  uint32_t class_index = 0;
  std::vector<std::unique_ptr<Node>> children;
  int min = 0, max = 0;  // kRepeat; max == kUnbounded for no upper bound
  bool greedy = true;
  bool negative = false;  // kLookahead
};

uint32_t CategoryBit(GeneralCategory c) { return 1u << static_cast<int>(c); }

// Bit mask of the general categories named by `name` (one-letter group or two-letter category,
// or a few long aliases); 0 if unknown.
uint32_t CategoryMaskByName(const std::string& name) {
  static const char* kNames[] = {"Cn", "Lu", "Ll", "Lt", "Lm", "Lo", "Mn", "Mc", "Me", "Nd",
                                 "Nl", "No", "Pc", "Pd", "Ps", "Pe", "Pi", "Pf", "Po", "Sm",
                                 "Sc", "Sk", "So", "Zs", "Zl", "Zp", "Cc", "Cf", "Cs", "Co"};
  std::string n = name;
  if (n == "Letter") n = "L";
  if (n == "Mark" || n == "Combining_Mark") n = "M";
  if (n == "Number") n = "N";
  if (n == "Punctuation" || n == "Punct") n = "P";
  if (n == "Symbol") n = "S";
  if (n == "Separator") n = "Z";
  if (n == "Other") n = "C";
  if (n == "Lowercase_Letter") n = "Ll";
  if (n == "Uppercase_Letter") n = "Lu";
  if (n == "Decimal_Number") n = "Nd";
  if (n == "L&" || n == "LC")
    return CategoryBit(GeneralCategory::kLu) | CategoryBit(GeneralCategory::kLl) |
           CategoryBit(GeneralCategory::kLt);
  uint32_t mask = 0;
  for (int i = 0; i < 30; ++i) {
    const std::string cat = kNames[i];
    if ((n.size() == 1 && cat[0] == n[0]) || cat == n) mask |= 1u << i;
  }
  return mask;
}

char32_t AsciiLower(char32_t c) { return (c >= 'A' && c <= 'Z') ? c + 32 : c; }

class Parser {
 public:
  Parser(std::u32string pattern, std::vector<Regex::CharClass>* classes)
      : p_(std::move(pattern)), classes_(classes) {}

  absl::StatusOr<std::unique_ptr<Node>> Parse() {
    JAMBA_ASSIGN_OR_RETURN(auto node, ParseAlt());
    if (pos_ != p_.size()) return Error("unbalanced ')'");
    return node;
  }

 private:
  absl::Status Error(absl::string_view what) const {
    return absl::InvalidArgumentError(absl::StrCat(
        "unsupported or malformed regex ", CodePointsToUtf8(p_), ": ", what, " at offset ", pos_));
  }
  bool AtEnd() const { return pos_ >= p_.size(); }
  char32_t Peek(size_t ahead = 0) const { return pos_ + ahead < p_.size() ? p_[pos_ + ahead] : 0; }

  absl::StatusOr<std::unique_ptr<Node>> ParseAlt() {
    auto alt = std::make_unique<Node>();
    alt->kind = Node::Kind::kAlt;
    while (true) {
      JAMBA_ASSIGN_OR_RETURN(auto concat, ParseConcat());
      alt->children.push_back(std::move(concat));
      if (AtEnd() || Peek() != '|') break;
      ++pos_;
    }
    if (alt->children.size() == 1) return std::move(alt->children[0]);
    return alt;
  }

  absl::StatusOr<std::unique_ptr<Node>> ParseConcat() {
    auto concat = std::make_unique<Node>();
    concat->kind = Node::Kind::kConcat;
    while (!AtEnd() && Peek() != '|' && Peek() != ')') {
      if (Peek() == '(' && Peek(1) == '?' && Peek(2) == 'i' && Peek(3) == ')') {
        pos_ += 4;
        case_insensitive_ = true;  // until the end of the enclosing group
        continue;
      }
      JAMBA_ASSIGN_OR_RETURN(auto atom, ParseAtom());
      JAMBA_ASSIGN_OR_RETURN(atom, ParseQuantifiers(std::move(atom)));
      concat->children.push_back(std::move(atom));
    }
    return concat;
  }

  absl::StatusOr<std::unique_ptr<Node>> ParseQuantifiers(std::unique_ptr<Node> atom) {
    while (!AtEnd()) {
      int min, max;
      const char32_t c = Peek();
      if (c == '?') {
        min = 0, max = 1, ++pos_;
      } else if (c == '*') {
        min = 0, max = kUnbounded, ++pos_;
      } else if (c == '+') {
        min = 1, max = kUnbounded, ++pos_;
      } else if (c == '{') {
        if (!ParseBraces(&min, &max)) return atom;  // a literal '{' follows; ParseAtom takes it
        if (max != kUnbounded && max < min) return Error("bad {n,m}");
        if (min > 1000 || max > 1000) return Error("repetition count too large");
      } else {
        return atom;
      }
      bool greedy = true;
      if (!AtEnd() && Peek() == '?') {
        greedy = false;
        ++pos_;
      } else if (!AtEnd() && Peek() == '+') {
        return Error("possessive quantifier");
      }
      auto rep = std::make_unique<Node>();
      rep->kind = Node::Kind::kRepeat;
      rep->min = min;
      rep->max = max;
      rep->greedy = greedy;
      rep->children.push_back(std::move(atom));
      atom = std::move(rep);
    }
    return atom;
  }

  // Parses {n}, {n,}, {n,m} at pos_; leaves pos_ unchanged and returns false if not one.
  bool ParseBraces(int* min, int* max) {
    size_t i = pos_ + 1;
    auto number = [&](int* out) {
      size_t start = i;
      long v = 0;
      while (i < p_.size() && p_[i] >= '0' && p_[i] <= '9' && v < 100000) {
        v = v * 10 + (p_[i] - '0');
        ++i;
      }
      *out = static_cast<int>(v);
      return i > start;
    };
    if (!number(min)) return false;
    if (i < p_.size() && p_[i] == '}') {
      *max = *min;
    } else if (i < p_.size() && p_[i] == ',') {
      ++i;
      if (!number(max)) *max = kUnbounded;
      if (i >= p_.size() || p_[i] != '}') return false;
    } else {
      return false;
    }
    pos_ = i + 1;
    return true;
  }

  std::unique_ptr<Node> ClassNode(Regex::CharClass cls) {
    for (char32_t cp = 0; cp < 128; ++cp) {
      if (cls.MatchesSlow(cp)) cls.ascii[cp >> 6] |= uint64_t{1} << (cp & 63);
    }
    classes_->push_back(std::move(cls));
    auto node = std::make_unique<Node>();
    node->kind = Node::Kind::kClass;
    node->class_index = static_cast<uint32_t>(classes_->size() - 1);
    return node;
  }

  static Regex::ClassItem Range(char32_t lo, char32_t hi) {
    return {Regex::ClassItem::Kind::kRange, false, lo, hi, 0};
  }

  // Adds `cp` (and its simple case variants when case-insensitive) to `items`.
  void AddLiteral(char32_t cp, std::vector<Regex::ClassItem>* items) const {
    items->push_back(Range(cp, cp));
    if (!case_insensitive_) return;
    const char32_t lower = AsciiLower(cp);
    if (lower >= 'a' && lower <= 'z') {
      items->push_back(Range(lower, lower));
      items->push_back(Range(lower - 32, lower - 32));
      if (lower == 's') items->push_back(Range(0x17F, 0x17F));
      if (lower == 'k') items->push_back(Range(0x212A, 0x212A));
    }
  }

  absl::StatusOr<std::unique_ptr<Node>> ParseAtom() {
    const char32_t c = Peek();
    if (c == '(') return ParseGroup();
    if (c == '[') return ParseClass();
    if (c == '*' || c == '+' || c == '?') return Error("quantifier without operand");
    if (c == '^' || c == '$') return Error("anchors");
    ++pos_;
    Regex::CharClass cls;
    if (c == '.') {
      cls.negated = true;
      cls.items.push_back(Range('\n', '\n'));
      return ClassNode(std::move(cls));
    }
    if (c == '\\') {
      JAMBA_RETURN_IF_ERROR(ParseEscape(&cls.items, /*in_class=*/false));
      return ClassNode(std::move(cls));
    }
    AddLiteral(c, &cls.items);
    return ClassNode(std::move(cls));
  }

  absl::StatusOr<std::unique_ptr<Node>> ParseGroup() {
    ++pos_;  // '('
    const bool saved_ci = case_insensitive_;
    std::unique_ptr<Node> lookahead;
    if (Peek() == '?') {
      if (Peek(1) == ':') {
        pos_ += 2;
      } else if (Peek(1) == 'i' && Peek(2) == ':') {
        pos_ += 3;
        case_insensitive_ = true;
      } else if (Peek(1) == '=' || Peek(1) == '!') {
        lookahead = std::make_unique<Node>();
        lookahead->kind = Node::Kind::kLookahead;
        lookahead->negative = Peek(1) == '!';
        pos_ += 2;
      } else {
        return Error("group kind");
      }
    }
    JAMBA_ASSIGN_OR_RETURN(auto inner, ParseAlt());
    if (AtEnd() || Peek() != ')') return Error("missing ')'");
    ++pos_;
    case_insensitive_ = saved_ci;
    if (lookahead) {
      lookahead->children.push_back(std::move(inner));
      return lookahead;
    }
    return inner;
  }

  absl::StatusOr<std::unique_ptr<Node>> ParseClass() {
    ++pos_;  // '['
    Regex::CharClass cls;
    if (Peek() == '^') {
      cls.negated = true;
      ++pos_;
    }
    bool first = true;
    while (true) {
      if (AtEnd()) return Error("missing ']'");
      char32_t c = Peek();
      if (c == ']' && !first) {
        ++pos_;
        break;
      }
      first = false;
      if (c == '[') return Error("nested character class");
      if (c == '&' && Peek(1) == '&') return Error("class intersection");
      ++pos_;
      char32_t lo;
      if (c == '\\') {
        std::vector<Regex::ClassItem> items;
        JAMBA_RETURN_IF_ERROR(ParseEscape(&items, /*in_class=*/true));
        if (items.size() != 1 || items[0].kind != Regex::ClassItem::Kind::kRange ||
            items[0].lo != items[0].hi) {
          cls.items.insert(cls.items.end(), items.begin(), items.end());
          continue;
        }
        lo = items[0].lo;
      } else {
        lo = c;
      }
      if (Peek() == '-' && Peek(1) != ']' && pos_ + 1 < p_.size()) {
        ++pos_;
        char32_t hi = Peek();
        ++pos_;
        if (hi == '\\') {
          std::vector<Regex::ClassItem> items;
          JAMBA_RETURN_IF_ERROR(ParseEscape(&items, /*in_class=*/true));
          if (items.size() != 1 || items[0].kind != Regex::ClassItem::Kind::kRange) {
            return Error("bad class range");
          }
          hi = items[0].lo;
        }
        if (hi < lo) return Error("reversed class range");
        if (case_insensitive_) return Error("case-insensitive class range");
        cls.items.push_back(Range(lo, hi));
      } else {
        AddLiteral(lo, &cls.items);
      }
    }
    return ClassNode(std::move(cls));
  }

  absl::StatusOr<char32_t> ParseHex(size_t max_digits, bool braced) {
    char32_t v = 0;
    size_t n = 0;
    while (!AtEnd() && n < max_digits) {
      const char32_t c = Peek();
      int d;
      if (c >= '0' && c <= '9') {
        d = c - '0';
      } else if (c >= 'a' && c <= 'f') {
        d = c - 'a' + 10;
      } else if (c >= 'A' && c <= 'F') {
        d = c - 'A' + 10;
      } else {
        break;
      }
      v = v * 16 + d;
      ++n;
      ++pos_;
    }
    if (n == 0 || v > 0x10FFFF) return Error("bad hex escape");
    if (braced) {
      if (Peek() != '}') return Error("bad \\x{...}");
      ++pos_;
    }
    return v;
  }

  // Parses the escape after a consumed '\' into class items.
  absl::Status ParseEscape(std::vector<Regex::ClassItem>* items, bool in_class) {
    if (AtEnd()) return Error("trailing backslash");
    const char32_t c = Peek();
    ++pos_;
    using Kind = Regex::ClassItem::Kind;
    switch (c) {
      case 's':
      case 'S':
        items->push_back({Kind::kWhitespace, c == 'S', 0, 0, 0});
        return absl::OkStatus();
      case 'd':
      case 'D':
        items->push_back({Kind::kCategories, c == 'D', 0, 0, CategoryBit(GeneralCategory::kNd)});
        return absl::OkStatus();
      case 'w':
      case 'W':
        items->push_back({Kind::kCategories, c == 'W', 0, 0,
                          CategoryMaskByName("L") | CategoryMaskByName("M") |
                              CategoryBit(GeneralCategory::kNd) |
                              CategoryBit(GeneralCategory::kPc)});
        return absl::OkStatus();
      case 'p':
      case 'P': {
        bool negated = c == 'P';
        std::string name;
        if (Peek() == '{') {
          ++pos_;
          if (Peek() == '^') {
            negated = !negated;
            ++pos_;
          }
          while (!AtEnd() && Peek() != '}') {
            if (Peek() > 0x7F) return Error("bad property name");
            name.push_back(static_cast<char>(Peek()));
            ++pos_;
          }
          if (AtEnd()) return Error("missing '}'");
          ++pos_;
        } else if (!AtEnd() && Peek() < 0x80) {
          name.push_back(static_cast<char>(Peek()));
          ++pos_;
        }
        const uint32_t mask = CategoryMaskByName(name);
        if (mask == 0) return Error(absl::StrCat("unsupported property \\p{", name, "}"));
        items->push_back({Kind::kCategories, negated, 0, 0, mask});
        return absl::OkStatus();
      }
      case 'r':
        items->push_back(Range('\r', '\r'));
        return absl::OkStatus();
      case 'n':
        items->push_back(Range('\n', '\n'));
        return absl::OkStatus();
      case 't':
        items->push_back(Range('\t', '\t'));
        return absl::OkStatus();
      case 'f':
        items->push_back(Range('\f', '\f'));
        return absl::OkStatus();
      case 'v':
        items->push_back(Range('\v', '\v'));
        return absl::OkStatus();
      case 'a':
        items->push_back(Range(7, 7));
        return absl::OkStatus();
      case 'e':
        items->push_back(Range(0x1B, 0x1B));
        return absl::OkStatus();
      case '0':
        items->push_back(Range(0, 0));
        return absl::OkStatus();
      case 'x': {
        const bool braced = Peek() == '{';
        if (braced) ++pos_;
        JAMBA_ASSIGN_OR_RETURN(char32_t v, ParseHex(braced ? 8 : 2, braced));
        AddLiteral(v, items);
        return absl::OkStatus();
      }
      case 'u': {
        JAMBA_ASSIGN_OR_RETURN(char32_t v, ParseHex(4, false));
        AddLiteral(v, items);
        return absl::OkStatus();
      }
      default:
        break;
    }
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '1' && c <= '9')) {
      return Error(absl::StrCat("escape \\", std::string(1, static_cast<char>(c))));
    }
    (void)in_class;
    AddLiteral(c, items);
    return absl::OkStatus();
  }

  std::u32string p_;
  size_t pos_ = 0;
  bool case_insensitive_ = false;
  std::vector<Regex::CharClass>* classes_;
};

bool Nullable(const Node& n) {
  switch (n.kind) {
    case Node::Kind::kClass:
      return false;
    case Node::Kind::kConcat:
      for (const auto& c : n.children) {
        if (!Nullable(*c)) return false;
      }
      return true;
    case Node::Kind::kAlt:
      for (const auto& c : n.children) {
        if (Nullable(*c)) return true;
      }
      return false;
    case Node::Kind::kRepeat:
      return n.min == 0 || Nullable(*n.children[0]);
    case Node::Kind::kLookahead:
      return true;
  }
  return true;
}

class Compiler {
 public:
  explicit Compiler(std::vector<Regex::Inst>* program) : prog_(program) {}

  absl::Status Emit(const Node& n) {
    if (prog_->size() > kMaxProgramSize) {
      return absl::InvalidArgumentError("regex too large after expanding repetitions");
    }
    using Op = Regex::Op;
    switch (n.kind) {
      case Node::Kind::kClass:
        prog_->push_back({Op::kClass, false, n.class_index, 0});
        return absl::OkStatus();
      case Node::Kind::kConcat:
        for (const auto& c : n.children) JAMBA_RETURN_IF_ERROR(Emit(*c));
        return absl::OkStatus();
      case Node::Kind::kAlt: {
        std::vector<size_t> jumps;
        for (size_t i = 0; i < n.children.size(); ++i) {
          size_t split = 0;
          const bool last = i + 1 == n.children.size();
          if (!last) {
            split = prog_->size();
            prog_->push_back({Op::kSplit, false, static_cast<uint32_t>(split + 1), 0});
          }
          JAMBA_RETURN_IF_ERROR(Emit(*n.children[i]));
          if (!last) {
            jumps.push_back(prog_->size());
            prog_->push_back({Op::kJmp, false, 0, 0});
            (*prog_)[split].y = static_cast<uint32_t>(prog_->size());
          }
        }
        for (size_t j : jumps) (*prog_)[j].x = static_cast<uint32_t>(prog_->size());
        return absl::OkStatus();
      }
      case Node::Kind::kRepeat: {
        const Node& body = *n.children[0];
        for (int i = 0; i < n.min; ++i) JAMBA_RETURN_IF_ERROR(Emit(body));
        if (n.max == kUnbounded) {
          if (Nullable(body)) {
            return absl::InvalidArgumentError(
                "unsupported regex: unbounded repetition of an expression that can match the "
                "empty string");
          }
          const size_t split = prog_->size();
          prog_->push_back({Op::kSplit, false, 0, 0});
          JAMBA_RETURN_IF_ERROR(Emit(body));
          prog_->push_back({Op::kJmp, false, static_cast<uint32_t>(split), 0});
          SetSplit(split, split + 1, prog_->size(), n.greedy);
          return absl::OkStatus();
        }
        std::vector<size_t> splits;
        for (int i = n.min; i < n.max; ++i) {
          splits.push_back(prog_->size());
          prog_->push_back({Op::kSplit, false, 0, 0});
          JAMBA_RETURN_IF_ERROR(Emit(body));
        }
        for (size_t s : splits) SetSplit(s, s + 1, prog_->size(), n.greedy);
        return absl::OkStatus();
      }
      case Node::Kind::kLookahead: {
        const size_t la = prog_->size();
        prog_->push_back({Op::kLookahead, n.negative, 0, static_cast<uint32_t>(la + 1)});
        JAMBA_RETURN_IF_ERROR(Emit(*n.children[0]));
        prog_->push_back({Op::kMatch, false, 0, 0});
        (*prog_)[la].x = static_cast<uint32_t>(prog_->size());
        return absl::OkStatus();
      }
    }
    return absl::OkStatus();
  }

 private:
  void SetSplit(size_t split, size_t body, size_t out, bool greedy) {
    (*prog_)[split].x = static_cast<uint32_t>(greedy ? body : out);
    (*prog_)[split].y = static_cast<uint32_t>(greedy ? out : body);
  }
  std::vector<Regex::Inst>* prog_;
};

}  // namespace

bool Regex::CharClass::MatchesSlow(char32_t cp) const {
  bool hit = false;
  for (const ClassItem& item : items) {
    bool m = false;
    switch (item.kind) {
      case ClassItem::Kind::kRange:
        m = cp >= item.lo && cp <= item.hi;
        break;
      case ClassItem::Kind::kCategories:
        m = (item.category_mask & CategoryBit(GetGeneralCategory(cp))) != 0;
        break;
      case ClassItem::Kind::kWhitespace:
        m = IsWhitespace(cp);
        break;
    }
    if (m != item.negated) {
      hit = true;
      break;
    }
  }
  return hit != negated;
}

bool Regex::CharClass::Matches(char32_t cp) const {
  if (cp < 128) return (ascii[cp >> 6] >> (cp & 63)) & 1;
  return MatchesSlow(cp);
}

absl::StatusOr<std::unique_ptr<Regex>> Regex::Compile(absl::string_view pattern) {
  if (!IsValidUtf8(pattern)) return absl::InvalidArgumentError("regex is not valid UTF-8");
  std::unique_ptr<Regex> re(new Regex());
  Parser parser(Utf8ToCodePoints(pattern), &re->classes_);
  JAMBA_ASSIGN_OR_RETURN(auto root, parser.Parse());
  Compiler compiler(&re->program_);
  absl::Status status = compiler.Emit(*root);
  if (!status.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("regex ", std::string(pattern), ": ", status.message()));
  }
  re->program_.push_back({Op::kMatch, false, 0, 0});
  return re;
}

size_t Regex::Run(const std::u32string& text, size_t pos, uint32_t pc,
                  std::vector<std::pair<uint32_t, size_t>>* backtrack) const {
  // Entries below `base` belong to an enclosing run (lookaheads recurse).
  const size_t base = backtrack->size();
  while (true) {
    const Inst& inst = program_[pc];
    bool fail = false;
    switch (inst.op) {
      case Op::kClass:
        if (pos < text.size() && classes_[inst.x].Matches(text[pos])) {
          ++pos;
          ++pc;
        } else {
          fail = true;
        }
        break;
      case Op::kSplit:
        backtrack->emplace_back(inst.y, pos);
        pc = inst.x;
        break;
      case Op::kJmp:
        pc = inst.x;
        break;
      case Op::kMatch:
        backtrack->resize(base);
        return pos;
      case Op::kLookahead: {
        const bool matched = Run(text, pos, inst.y, backtrack) != kNoMatch;
        if (matched != inst.negative) {
          pc = inst.x;
        } else {
          fail = true;
        }
        break;
      }
    }
    if (fail) {
      if (backtrack->size() == base) return kNoMatch;
      pc = backtrack->back().first;
      pos = backtrack->back().second;
      backtrack->pop_back();
    }
  }
}

bool Regex::Find(const std::u32string& text, size_t start, size_t* begin, size_t* end) const {
  std::vector<std::pair<uint32_t, size_t>> backtrack;
  for (size_t p = start; p <= text.size(); ++p) {
    const size_t e = Run(text, p, 0, &backtrack);
    if (e != kNoMatch) {
      *begin = p;
      *end = e;
      return true;
    }
  }
  return false;
}

std::vector<std::pair<size_t, size_t>> Regex::FindAll(const std::u32string& text) const {
  std::vector<std::pair<size_t, size_t>> out;
  size_t start = 0;
  size_t b, e;
  while (start <= text.size() && Find(text, start, &b, &e)) {
    out.emplace_back(b, e);
    start = e > b ? e : e + 1;
  }
  return out;
}

}  // namespace jamba

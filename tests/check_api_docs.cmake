# check_api_docs.cmake - the API-reference rule of issue 8, checked on the public headers:
#
#   1. A header opens with a block comment that has an OVERVIEW heading and, after it, an EXAMPLE
#      heading (e.g. "WORKED EXAMPLE: ...") followed by at least one code line indented by four
#      or more spaces inside the comment.
#   2. Every function declaration at file scope (a prototype ending in ");", multi-line or with
#      __attribute__ / __declspec, or an inline definition) and every function-like macro has a
#      comment on one of its own lines, or directly above it: the line before it is a comment
#      (preprocessor conditionals in between are skipped). A comment directly above a run of
#      consecutive declarations covers the run; a trailing comment covers only its own
#      declaration; a blank line ends a run; a bare divider ("/* ------- section */") documents
#      nothing.
#
# Run:   cmake [-DHEADERS="a.h|b.h"] -P tests/check_api_docs.cmake
# HEADERS is '|'-separated (a CMake list would be split by add_test); the default is the public
# headers as CMakeLists.txt installs them (each room's include/tapegrad/).
# Fails listing "header:line name" for every undocumented declaration. Before the headers, the
# parser checks itself on a fixture with known answers, so a parser that finds nothing fails too.
#
# Limits (fine for C headers written like these): no trigraphs or digraphs; a string literal
# containing a quote must escape it; K&R definitions and macros that generate declarations are not
# seen; a declaration is identified by the identifier before its first top-level '(' (after
# attributes are removed).
# tests/CMakeLists.txt includes every tests/*.cmake into the build: this file only runs under -P.
if(NOT CMAKE_SCRIPT_MODE_FILE)
  return()
endif()
cmake_minimum_required(VERSION 3.20)

# --------------------------------------------------------------------------------- helpers

# The content as a CMake list of lines. ';', '[', ']' and '\' are replaced by @SEMI@, @LB@, @RB@
# and @BS@ first: the first three would break list splitting, the last escapes.
function(_ad_lines content out)
  string(REPLACE "\r" "" content "${content}")
  string(REPLACE "\\" "@BS@" content "${content}")
  string(REPLACE ";" "@SEMI@" content "${content}")
  string(REPLACE "[" "@LB@" content "${content}")
  string(REPLACE "]" "@RB@" content "${content}")
  string(REPLACE "\n" ";" content "${content}")
  set(${out} "${content}" PARENT_SCOPE)
endfunction()

# One line: its code with comments blanked out, whether it holds any comment text, and the
# block-comment state at its end. in_comment: 1 if the line starts inside /* ... */.
function(_ad_scan_line line in_comment out_code out_has_comment out_in_comment)
  set(code "")
  set(has 0)
  set(rest "${line}")
  set(inc ${in_comment})
  while(NOT rest STREQUAL "")
    if(inc)
      set(has 1)
      string(FIND "${rest}" "*/" p)
      if(p EQUAL -1)
        set(rest "")
        break()
      endif()
      math(EXPR p "${p} + 2")
      string(SUBSTRING "${rest}" ${p} -1 rest)
      string(APPEND code " ")
      set(inc 0)
    else()
      string(FIND "${rest}" "/*" pb)
      string(FIND "${rest}" "//" pl)
      string(FIND "${rest}" "\"" pq)
      set(first -1)
      set(kind "")
      foreach(k pb pl pq)
        if(NOT ${k} EQUAL -1 AND (first EQUAL -1 OR ${k} LESS first))
          set(first ${${k}})
          set(kind ${k})
        endif()
      endforeach()
      if(first EQUAL -1)
        string(APPEND code "${rest}")
        set(rest "")
        break()
      endif()
      string(SUBSTRING "${rest}" 0 ${first} before)
      string(APPEND code "${before}")
      if(kind STREQUAL "pl")
        set(has 1)
        set(rest "")
        break()
      elseif(kind STREQUAL "pb")
        set(has 1)
        math(EXPR p "${first} + 2")
        string(SUBSTRING "${rest}" ${p} -1 rest)
        string(APPEND code " ")
        set(inc 1)
      else() # a string literal: keep it as "S" in the code, skip to its closing quote
        math(EXPR p "${first} + 1")
        string(SUBSTRING "${rest}" ${p} -1 rest)
        while(1)
          string(FIND "${rest}" "\"" q)
          if(q EQUAL -1)
            set(rest "")
            break()
          endif()
          set(escaped 0)
          if(q GREATER_EQUAL 4)
            math(EXPR b "${q} - 4")
            string(SUBSTRING "${rest}" ${b} 4 prev)
            if(prev STREQUAL "@BS@")
              set(escaped 1)
            endif()
          endif()
          math(EXPR q "${q} + 1")
          string(SUBSTRING "${rest}" ${q} -1 rest)
          if(NOT escaped)
            break()
          endif()
        endwhile()
        string(APPEND code "\"S\"")
      endif()
    endif()
  endwhile()
  set(${out_code} "${code}" PARENT_SCOPE)
  set(${out_has_comment} ${has} PARENT_SCOPE)
  set(${out_in_comment} ${inc} PARENT_SCOPE)
endfunction()

# text without every "<kw> ( ... )" group (balanced parentheses), for kw in the attribute keywords.
function(_ad_strip_attrs text out)
  foreach(kw __attribute__ __declspec __asm__)
    string(LENGTH "${kw}" kwlen)
    while(1)
      string(FIND "${text}" "${kw}" p)
      if(p EQUAL -1)
        break()
      endif()
      string(LENGTH "${text}" len)
      math(EXPR i "${p} + ${kwlen}")
      set(depth 0)
      set(end -1)
      while(i LESS len)
        string(SUBSTRING "${text}" ${i} 1 c)
        if(c STREQUAL "(")
          math(EXPR depth "${depth} + 1")
        elseif(c STREQUAL ")")
          math(EXPR depth "${depth} - 1")
          if(depth EQUAL 0)
            set(end ${i})
            break()
          endif()
        elseif(depth EQUAL 0 AND NOT c MATCHES "[ \t]")
          break() # keyword without a parenthesised argument
        endif()
        math(EXPR i "${i} + 1")
      endwhile()
      string(SUBSTRING "${text}" 0 ${p} head)
      if(end EQUAL -1)
        math(EXPR i "${p} + ${kwlen}")
      else()
        math(EXPR i "${end} + 1")
      endif()
      string(SUBSTRING "${text}" ${i} -1 tail)
      set(text "${head} ${tail}")
    endwhile()
  endforeach()
  set(${out} "${text}" PARENT_SCOPE)
endfunction()

# ------------------------------------------------------------------------------ the checker

# Check one header's text. label names it in messages. Sets <out_fail> to a list of
# "label:line name" strings, <out_count> to the number of declarations found.
function(_ad_check label content out_fail out_count)
  _ad_lines("${content}" lines)
  set(fails "")

  # ---- 1. the opening comment: OVERVIEW, then EXAMPLE, then an indented code line
  set(n 0)
  set(state "start")
  set(have_overview 0)
  set(have_example 0)
  set(have_code 0)
  foreach(line IN LISTS lines)
    math(EXPR n "${n} + 1")
    if(state STREQUAL "start")
      if(line MATCHES "^[ \t]*$")
        continue()
      endif()
      if(NOT line MATCHES "^[ \t]*/\\*")
        break()
      endif()
      set(state "in")
    endif()
    if(line MATCHES "^[ \t]*(/?\\*)?[ \t]*OVERVIEW")
      set(have_overview 1)
    elseif(have_overview AND line MATCHES "^[ \t]*(/?\\*)?[ \t]*([A-Z]+ )*EXAMPLE")
      set(have_example 1)
    elseif(have_example AND line MATCHES "^[ \t]*\\*     [ ]*[^ ]")
      set(have_code 1)
    endif()
    if(line MATCHES "\\*/")
      break()
    endif()
  endforeach()
  if(NOT have_overview)
    list(APPEND fails "${label}:1 (the header must open with a block comment with an OVERVIEW heading)")
  elseif(NOT have_example)
    list(APPEND fails "${label}:1 (the opening comment has no EXAMPLE heading after OVERVIEW)")
  elseif(NOT have_code)
    list(APPEND fails "${label}:1 (the opening comment's EXAMPLE has no code indented by 4+ spaces)")
  endif()

  # ---- 2. declarations
  set(n 0)
  set(inc 0)            # inside a block comment
  set(pp_cont 0)        # the previous line was a preprocessor line ending in a backslash
  set(pp_depth 0)       # nesting of #if
  set(cpp_at -1)        # pp_depth of an open #ifdef __cplusplus branch (its lines are skipped)
  set(brace 0)
  set(paren 0)
  set(stmt "")          # code of the statement being read
  set(stmt_first 0)     # its first line
  set(stmt_doc 0)       # a comment on one of its lines
  set(stmt_pre "")      # its code before the first top-level '{' ("" if none yet)
  set(stmt_brace 0)     # it has a top-level '{'
  set(macro_line 0)     # a function-like macro being read (continuation lines)
  set(macro_doc 0)
  set(macro_name "")
  set(count 0)
  # per line: kind_<n> is blank | comment | divider | code | ppcond | pp; decl_end_<n> is the
  # index of the declaration ending on line n
  set(decls "")         # indices 1..count; decl_<i>_first/_last/_name/_doc
  foreach(line IN LISTS lines)
    math(EXPR n "${n} + 1")
    set(was_inc ${inc})
    _ad_scan_line("${line}" ${inc} code has inc)
    set(blank_code 0)
    if(code MATCHES "^[ \t]*$")
      set(blank_code 1)
    endif()

    # preprocessor lines (and their continuations)
    set(is_pp 0)
    if(pp_cont OR (NOT was_inc AND code MATCHES "^[ \t]*#"))
      set(is_pp 1)
    endif()
    if(is_pp)
      set(first_pp_line 0)
      if(NOT pp_cont)
        set(first_pp_line 1)
      endif()
      set(pp_cont 0)
      if(code MATCHES "@BS@[ \t]*$")
        set(pp_cont 1)
      endif()
      set(kind_${n} "pp")
      if(first_pp_line)
        if(code MATCHES "^[ \t]*#[ \t]*(if|ifdef|ifndef)([^a-z]|$)")
          math(EXPR pp_depth "${pp_depth} + 1")
          set(kind_${n} "ppcond")
          if(cpp_at EQUAL -1 AND code MATCHES "__cplusplus" AND NOT code MATCHES "!" AND NOT code MATCHES "ifndef")
            set(cpp_at ${pp_depth})
          endif()
        elseif(code MATCHES "^[ \t]*#[ \t]*(elif|else)([^a-z]|$)")
          set(kind_${n} "ppcond")
          if(pp_depth EQUAL cpp_at)
            set(cpp_at -1)
          endif()
        elseif(code MATCHES "^[ \t]*#[ \t]*endif([^a-z]|$)")
          set(kind_${n} "ppcond")
          if(pp_depth EQUAL cpp_at)
            set(cpp_at -1)
          endif()
          math(EXPR pp_depth "${pp_depth} - 1")
        elseif(cpp_at EQUAL -1 AND brace EQUAL 0 AND code MATCHES "^[ \t]*#[ \t]*define[ \t]+([A-Za-z_][A-Za-z0-9_]*)\\(")
          set(macro_name "${CMAKE_MATCH_1}")
          set(macro_line ${n})
          set(macro_doc ${has})
        endif()
      elseif(macro_line GREATER 0 AND has)
        set(macro_doc 1)
      endif()
      if(macro_line GREATER 0 AND NOT pp_cont)
        math(EXPR count "${count} + 1")
        set(decl_${count}_first ${macro_line})
        set(decl_${count}_last ${n})
        set(decl_${count}_name "${macro_name}")
        set(decl_${count}_doc ${macro_doc})
        set(decl_end_${n} ${count})
        set(macro_line 0)
      endif()
      continue()
    endif()

    if(blank_code AND NOT has)
      set(kind_${n} "blank")
    elseif(blank_code)
      set(kind_${n} "comment")
      if(line MATCHES "^[ \t]*/\\*[ \t]*--------.*\\*/[ \t]*$")
        set(kind_${n} "divider")
      endif()
    else()
      set(kind_${n} "code")
    endif()
    if(NOT cpp_at EQUAL -1 OR blank_code)
      if(NOT stmt STREQUAL "" AND has)
        set(stmt_doc 1)
      endif()
      continue()
    endif()

    # code: tokens in order, delimiters apart
    if(stmt MATCHES "^[ \t]*$")
      set(stmt_doc ${has})
    elseif(has)
      set(stmt_doc 1)
    endif()
    string(REGEX MATCHALL "[{}()]|@SEMI@|[^{}()@]+|@" toks "${code} ")
    foreach(tok IN LISTS toks)
      if(stmt MATCHES "^[ \t]*$" AND NOT tok MATCHES "^[ \t]*$")
        set(stmt_first ${n})
        set(stmt_doc ${has})
      endif()
      set(end_stmt 0)
      if(tok STREQUAL "(")
        math(EXPR paren "${paren} + 1")
      elseif(tok STREQUAL ")")
        math(EXPR paren "${paren} - 1")
      elseif(tok STREQUAL "{")
        if(brace EQUAL 0 AND NOT stmt_brace)
          set(stmt_pre "${stmt}")
          set(stmt_brace 1)
        endif()
        math(EXPR brace "${brace} + 1")
      elseif(tok STREQUAL "}")
        math(EXPR brace "${brace} - 1")
        if(brace EQUAL 0)
          # a function definition ends at its brace; a struct, union or enum at the ';' after it
          _ad_strip_attrs("${stmt_pre}" pre)
          if(pre MATCHES "\\)[ \t]*$" AND NOT pre MATCHES "=" AND NOT pre MATCHES "^[ \t]*(typedef|struct|union|enum)[ \t]")
            set(end_stmt 2)
          endif()
        endif()
      elseif(tok STREQUAL "@SEMI@" AND brace EQUAL 0 AND paren EQUAL 0)
        set(end_stmt 1)
      endif()
      if(NOT end_stmt)
        string(APPEND stmt "${tok}")
        continue()
      endif()

      # a statement ends: is it a function declaration or definition?
      if(end_stmt EQUAL 2)
        set(text "${stmt_pre}")
      elseif(stmt_brace)
        set(text "") # struct, union, enum (or an initialised variable): not a function
      else()
        set(text "${stmt}")
      endif()
      _ad_strip_attrs("${text}" text)
      string(REGEX REPLACE "[ \t]+" " " text "${text}")
      if(text MATCHES "\\(" AND NOT text MATCHES "^ ?typedef " AND NOT text MATCHES "=")
        set(name "?")
        if(text MATCHES "([A-Za-z_][A-Za-z0-9_]*) ?\\(")
          set(name "${CMAKE_MATCH_1}")
        endif()
        if(NOT name MATCHES "^(_Static_assert|static_assert)$")
          math(EXPR count "${count} + 1")
          set(decl_${count}_first ${stmt_first})
          set(decl_${count}_last ${n})
          set(decl_${count}_name "${name}")
          set(decl_${count}_doc ${stmt_doc})
          set(decl_end_${n} ${count})
        endif()
      endif()
      set(stmt "")
      set(stmt_pre "")
      set(stmt_brace 0)
      set(stmt_doc 0)
    endforeach()
  endforeach()

  # ---- documented? its own comment, or the line above is a comment, or it continues a run of
  # declarations that the comment above the run documents
  if(count GREATER 0)
    foreach(i RANGE 1 ${count})
      set(by_group 0)
      set(l ${decl_${i}_first})
      math(EXPR l "${l} - 1")
      while(l GREATER 0 AND "${kind_${l}}" STREQUAL "ppcond")
        math(EXPR l "${l} - 1")
      endwhile()
      if(l GREATER 0)
        if("${kind_${l}}" STREQUAL "comment")
          set(by_group 1)
        elseif(DEFINED decl_end_${l})
          set(j ${decl_end_${l}})
          if(NOT j EQUAL i)
            set(by_group ${decl_${j}_group})
          endif()
        endif()
      endif()
      set(decl_${i}_group ${by_group})
      if(NOT decl_${i}_doc AND NOT by_group)
        list(APPEND fails "${label}:${decl_${i}_first} ${decl_${i}_name}")
      endif()
    endforeach()
  endif()
  if(count EQUAL 0)
    list(APPEND fails "${label}:1 (no function declarations found: not a public header, or the parser is out of date)")
  endif()
  set(${out_fail} "${fails}" PARENT_SCOPE)
  set(${out_count} ${count} PARENT_SCOPE)
endfunction()

# ------------------------------------------------------------------ self-test of the parser
# Every declaration named "bad*" must be reported, and nothing else.
set(_ad_fixture [=[
/*
 * fixture.h - a header for the checker's self-test.
 *
 * OVERVIEW
 *
 * Text.
 *
 * EXAMPLE
 *
 *     good1(1);
 */
#ifndef FIXTURE_H
#define FIXTURE_H
#include <stddef.h>
#ifdef __cplusplus
extern "C" {
#endif

#define NOT_A_FUNCTION (1 + 2) /* object-like */
#define OBJECT2 ((size_t)1 << 30)

/* one */
int good1(int x);
int good2(int x);            /* a run under one comment: both documented */
int good3(const char *s,
          int n);            /* multi-line, still in the run */

int bad1(void);
int good4(void); /* trailing comment */
int bad2(void);
int good4b(void); /* the line above has only its own trailing comment: bad2 is not covered */

/* -------------------------------------------------------------- a divider is not a comment */
int bad3(int a, int b);

typedef struct s {
    int (*fp)(int);          /* a member, not a function */
    int a[2];
} s;
int bad4(s *p);
/* documented
 * over two lines */
void *good5(size_t n,
            const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

void bad5(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;

__attribute__((warn_unused_result)) int bad6(void);
/* a "string with /* inside" and a ; */
__attribute__((warn_unused_result)) int good6(void);

static inline int bad7(int x) { return x + 1; }
/* inline, documented */
static inline int good7(int x) {
    return x + 2;
}

#define BAD8(x) ((x) + 1)
#define GOOD8(x) ((x) + 2) /* trailing */
/* above a continued macro */
#define GOOD9(x) \
    ((x) + 3)

#define BAD10(x) \
    ((x) + 4)
typedef int (*callback)(int);
enum { E1 = 1, E2 = 2 };
int good10(int x); // a C++-style comment
/* a string holding a comment opener: bad11 must still be seen */
#define GOOD11(x) "/*" x

int bad11(void);

#ifdef __cplusplus
}
#endif
#endif
]=])
_ad_check("fixture.h" "${_ad_fixture}" _ad_fails _ad_count)
set(_ad_want "fixture.h:28 bad1;fixture.h:30 bad2;fixture.h:34 bad3;fixture.h:40 bad4;fixture.h:50 bad5;fixture.h:56 bad6;fixture.h:60 bad7;fixture.h:66 BAD8;fixture.h:72 BAD10;fixture.h:80 bad11")
if(NOT _ad_fails STREQUAL _ad_want)
  string(REPLACE ";" "\n  " _ad_got "${_ad_fails}")
  string(REPLACE ";" "\n  " _ad_exp "${_ad_want}")
  message(FATAL_ERROR "check_api_docs: the parser's self-test failed.\nexpected:\n  ${_ad_exp}\ngot:\n  ${_ad_got}")
endif()
set(_ad_nodoc [=[
/* header.h - no overview */
int f(void); /* documented */
]=])
_ad_check("nodoc.h" "${_ad_nodoc}" _ad_fails _ad_count)
if(NOT _ad_fails MATCHES "OVERVIEW")
  message(FATAL_ERROR "check_api_docs: the self-test missed a header without an OVERVIEW: ${_ad_fails}")
endif()

# --------------------------------------------------------------------------- the headers
get_filename_component(_ad_root "${CMAKE_CURRENT_LIST_DIR}/.." ABSOLUTE)
if(DEFINED HEADERS AND NOT HEADERS STREQUAL "")
  string(REPLACE "|" ";" _ad_headers "${HEADERS}")
else()
  file(GLOB _ad_headers "${_ad_root}/autograd/include/tapegrad/*.h" "${_ad_root}/layers/include/tapegrad/*.h"
    "${_ad_root}/optim/include/tapegrad/*.h")
endif()
list(SORT _ad_headers)
set(_ad_all "")
set(_ad_total 0)
foreach(h IN LISTS _ad_headers)
  if(NOT IS_ABSOLUTE "${h}")
    set(h "${_ad_root}/${h}")
  endif()
  if(NOT EXISTS "${h}")
    list(APPEND _ad_all "${h}: no such file")
    continue()
  endif()
  file(RELATIVE_PATH rel "${_ad_root}" "${h}")
  if(rel MATCHES "^\\.\\./")
    set(rel "${h}") # outside the source tree: the path as given
  endif()
  file(READ "${h}" text)
  _ad_check("${rel}" "${text}" fails count)
  math(EXPR _ad_total "${_ad_total} + ${count}")
  list(LENGTH fails nf)
  message(STATUS "${rel}: ${count} declarations, ${nf} problems")
  list(APPEND _ad_all ${fails})
endforeach()
list(LENGTH _ad_headers _ad_nh)
if(_ad_nh EQUAL 0)
  message(FATAL_ERROR "check_api_docs: no headers given")
endif()
if(_ad_all)
  list(LENGTH _ad_all _ad_n)
  string(REPLACE ";" "\n  " _ad_list "${_ad_all}")
  message(FATAL_ERROR "check_api_docs: ${_ad_n} problems (every public function needs a comment on "
    "its line or directly above; every header an OVERVIEW and an EXAMPLE):\n  ${_ad_list}")
endif()
message(STATUS "check_api_docs: ${_ad_nh} headers, ${_ad_total} declarations, all documented")

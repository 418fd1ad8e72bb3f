-- Neovim end-to-end check of `coverlay lsp` (run by tests/lsp_neovim.rs):
--   COVERLAY_BIN=… COVERLAY_FILE=…/src/lib.rs COVERLAY_RESULT=… nvim --headless -u tests/nvim/init.lua
-- Loads editors/neovim, opens the file, waits for coverlay's diagnostics, inlay hints and code lenses, appends a test that
-- calls the uncovered `close_account`, writes the buffer, and waits for the overlay to update.
-- Writes one line per check to COVERLAY_RESULT ("ok …" or "FAIL …") and exits 0 only if all passed.

local bin = assert(os.getenv('COVERLAY_BIN'), 'COVERLAY_BIN')
local file = assert(os.getenv('COVERLAY_FILE'), 'COVERLAY_FILE')
local result_path = assert(os.getenv('COVERLAY_RESULT'), 'COVERLAY_RESULT')
local timeout = tonumber(os.getenv('COVERLAY_TIMEOUT_MS') or '120000')

-- The plugin in editors/neovim (vim.lsp.config + vim.lsp.enable, hints and lenses on attach).
local here = debug.getinfo(1, 'S').source:sub(2):match('(.*)/tests/nvim/init.lua$')
vim.opt.runtimepath:prepend(here .. '/editors/neovim')
require('coverlay').setup({ cmd = { bin, 'lsp' } })

local results, failed = {}, false
local function check(ok, what)
  table.insert(results, (ok and 'ok ' or 'FAIL ') .. what)
  if not ok then failed = true end
  return ok
end

local function finish()
  local f = assert(io.open(result_path, 'w'))
  f:write(table.concat(results, '\n') .. '\n')
  f:close()
  vim.cmd(failed and 'cquit 1' or 'qall!')
end

local function coverlay_diagnostics(buf)
  local found = {}
  for _, d in ipairs(vim.diagnostic.get(buf)) do
    if d.source == 'coverlay' then table.insert(found, d) end
  end
  return found
end

local function mentions(diagnostics, text)
  for _, d in ipairs(diagnostics) do
    if d.message:find(text, 1, true) then return true end
  end
  return false
end

local function line_of(buf, needle)
  for i, line in ipairs(vim.api.nvim_buf_get_lines(buf, 0, -1, false)) do
    if line:find(needle, 1, true) then return i - 1 end
  end
end

-- Code lenses of the buffer as lsp.CodeLens[]: 0.12 returns { client_id, lens } items from
-- get({ bufnr }) (get(bufnr) is deprecated there), 0.11 the lenses themselves from get(bufnr).
local function lenses(buf)
  if not vim.lsp.codelens.enable then return vim.lsp.codelens.get(buf) end
  return vim.tbl_map(function(item) return item.lens end, vim.lsp.codelens.get({ bufnr = buf }))
end

local function lens_title_on(buf, line)
  for _, lens in ipairs(lenses(buf)) do
    if lens.range.start.line == line and lens.command then return lens.command.title end
  end
end

local function hints_on(buf, line)
  return vim.lsp.inlay_hint.get({ bufnr = buf, range = {
    start = { line = line, character = 0 }, ['end'] = { line = line + 1, character = 0 } } })
end

local function main()
  vim.cmd.edit(vim.fn.fnameescape(file))
  local buf = vim.api.nvim_get_current_buf()

  check(vim.wait(timeout, function()
    return mentions(coverlay_diagnostics(buf), 'not covered by any test (fn close_account)')
  end, 100), 'diagnostic names the uncovered close_account')
  local diagnostics = coverlay_diagnostics(buf)
  local close_line = line_of(buf, 'pub fn close_account')
  for _, d in ipairs(diagnostics) do
    if d.message:find('close_account', 1, true) then
      check(d.lnum == close_line, 'diagnostic starts at the fn line ' .. close_line .. ' (got ' .. d.lnum .. ')')
      check(d.severity == vim.diagnostic.severity.HINT, 'severity is Hint')
      check(d._tags and d._tags.unnecessary == true, 'tagged unnecessary')
    end
  end

  local deposit_line = line_of(buf, 'self.balance += amount;')
  check(vim.wait(timeout, function() return #hints_on(buf, deposit_line) > 0 end, 100),
    'inlay hint on a covered line')
  local hint = hints_on(buf, deposit_line)[1]
  if hint then
    local label = hint.inlay_hint.label
    if type(label) == 'table' then label = label[1].value end
    check(label:match('^×%d+$') ~= nil, 'hint label is a hit count: ' .. label)
  end
  check(#hints_on(buf, close_line) == 0, 'no hint on the uncovered fn')

  -- 0.12: the plugin enabled lenses on attach and Neovim keeps them; 0.11: ask for them here.
  if not vim.lsp.codelens.enable then vim.lsp.codelens.refresh({ bufnr = buf }) end
  check(vim.wait(10000, function() return #lenses(buf) > 0 end, 100), 'code lenses arrive')
  local lens_title = lens_title_on(buf, close_line)
  check(lens_title == 'not covered', 'lens over close_account says not covered (got ' .. tostring(lens_title) .. ')')

  -- Cover close_account from a new test, write the buffer.
  vim.api.nvim_buf_set_lines(buf, -1, -1, false, {
    '', '#[cfg(test)]', 'mod closing {', '    #[test]', '    fn closing_pays_out() {',
    '        let mut ledger = super::Ledger::new();', '        ledger.deposit(5);',
    '        assert_eq!(ledger.close_account(), 5);', '    }', '}',
  })
  vim.cmd.write()
  check(vim.wait(timeout, function()
    local now = coverlay_diagnostics(buf)
    return #now > 0 and not mentions(now, 'close_account')
  end, 100), 'close_account diagnostic gone after the write')
  check(vim.wait(timeout, function() return #hints_on(buf, close_line) > 0 end, 100),
    'close_account line now has an inlay hint')
  -- The plugin's refresh on 0.11, coverlay's workspace/codeLens/refresh on 0.12.
  vim.wait(timeout, function()
    local title = lens_title_on(buf, close_line)
    return title ~= nil and title ~= 'not covered'
  end, 100)
  lens_title = lens_title_on(buf, close_line)
  check(lens_title ~= nil and lens_title:match('^%d+/%d+ lines') ~= nil,
    'lens over close_account shows its coverage after the write (got ' .. tostring(lens_title) .. ')')
  finish()
end

vim.api.nvim_create_autocmd('VimEnter', {
  once = true,
  callback = function()
    vim.schedule(function()
      local ok, err = pcall(main)
      if not ok then
        check(false, 'error: ' .. tostring(err))
        finish()
      end
    end)
  end,
})

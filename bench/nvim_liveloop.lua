-- A new user's session, scripted: Neovim with editors/neovim opens regex-syntax (bench/work, see
-- bench/overhead.py) and edits a function three times, writing after each edit.
--   COVERLAY_BIN=target/release/coverlay nvim --headless --clean -u bench/nvim_liveloop.lua
-- For each write it prints the server's selection message and the time until the inserted line
-- shows its hit count (the overlay has followed the save). The file is restored at the end.

local bin = assert(os.getenv('COVERLAY_BIN'), 'COVERLAY_BIN')
local here = debug.getinfo(1, 'S').source:sub(2):match('(.*)/bench/nvim_liveloop.lua$')
local file = here .. '/bench/work/regex-syntax/src/hir/literal.rs'
vim.opt.runtimepath:prepend(here .. '/editors/neovim')
require('coverlay').setup({ cmd = { bin, 'lsp' } })

local out = {}
local function say(text)
  table.insert(out, text)
  io.stdout:write(text .. '\n')
end

local logs = {}
local default_log = vim.lsp.handlers['window/logMessage']
vim.lsp.handlers['window/logMessage'] = function(err, result, ctx, config)
  table.insert(logs, result.message)
  if default_log then return default_log(err, result, ctx, config) end
end

local function hints_on(buf, line)
  return vim.lsp.inlay_hint.get({ bufnr = buf, range = {
    start = { line = line, character = 0 }, ['end'] = { line = line + 1, character = 0 } } })
end

local function line_of(buf, needle)
  for i, line in ipairs(vim.api.nvim_buf_get_lines(buf, 0, -1, false)) do
    if line:find(needle, 1, true) then return i - 1 end
  end
end

--- Waits for a log message after the `seen`-th one containing one of `texts`; returns it.
local function log_after(seen, texts)
  local found
  assert(vim.wait(600000, function()
    for i = seen + 1, #logs do
      for _, text in ipairs(texts) do
        if logs[i]:find(text, 1, true) then found = logs[i] return true end
      end
    end
    return false
  end, 10), 'a log message with ' .. table.concat(texts, ' or '))
  return found
end

local function main()
  local original = table.concat(vim.fn.readfile(file), '\n')
  vim.cmd.edit(vim.fn.fnameescape(file))
  local buf = vim.api.nvim_get_current_buf()
  local body = line_of(buf, 'pub fn min_literal_len(&self)') + 1
  local started = vim.uv.hrtime()
  log_after(0, { 'done:' })
  say(string.format('first run (all 149 tests, cached build): %.1f s', (vim.uv.hrtime() - started) / 1e9))
  for k = 1, 3 do
    vim.api.nvim_buf_set_lines(buf, body, body, false, { '        let _probe' .. k .. ' = ' .. k .. ';' })
    local seen = #logs
    local t0 = vim.uv.hrtime()
    vim.cmd.write()
    local selection = log_after(seen, { 'rerunning', 'nothing to rerun' })
    log_after(seen, { 'done:' })
    local done = (vim.uv.hrtime() - t0) / 1e9
    assert(vim.wait(10000, function() return #hints_on(buf, body) > 0 end, 10), 'hint after write ' .. k)
    local shown = (vim.uv.hrtime() - t0) / 1e9
    say(string.format('write %d: %s; run merged and published after %.2f s, the new line shows its count after %.2f s',
      k, selection:gsub('^.-: ', ''), done, shown))
  end
  vim.fn.writefile(vim.split(original, '\n'), file)
  vim.cmd('qall!')
end

vim.api.nvim_create_autocmd('VimEnter', {
  once = true,
  callback = function()
    vim.schedule(function()
      local ok, err = pcall(main)
      if not ok then
        io.stdout:write('error: ' .. tostring(err) .. '\n')
        vim.cmd('cquit 1')
      end
    end)
  end,
})

-- coverlay for Neovim 0.11+: starts `coverlay lsp` for Rust buffers and shows its overlay.
--
--   require('coverlay').setup({
--     cmd = { 'coverlay', 'lsp' },          -- path to the binary if it is not on PATH
--     settings = { severity = 'hint' },     -- sent as initializationOptions (see the README)
--     inlay_hints = true,                   -- hit counts at the end of covered lines
--     code_lens = true,                     -- "12/14 lines · 3 tests" over functions
--   })
--
-- Code lenses: Neovim 0.12 keeps them itself once `vim.lsp.codelens.enable` is on for a buffer (it
-- asks on attach and after edits, and answers coverlay's `workspace/codeLens/refresh` after each
-- run). Neovim 0.11 has no `enable` and answers that refresh with MethodNotFound, so there lenses
-- are refreshed here on attach, on write and after coverlay's diagnostics change (each run
-- publishes them). Inlay hints are refreshed by `on_inlay_hint_refresh` below on both.
local M = {}

--- Whether this Neovim manages code lenses itself (0.12+: `vim.lsp.codelens.enable`).
local function native_code_lens()
  return vim.lsp.codelens.enable ~= nil
end

--- Neovim 0.11's own refresh handler keeps lines it drew while the new hints were on their way
--- marked as done, so after a run the visible lines keep showing the old hints (or none).
--- Re-enabling hints starts the buffer's hint state afresh, and the new hints are drawn.
function M.on_inlay_hint_refresh(err, _, ctx)
  if err then return vim.NIL end
  local client = vim.lsp.get_client_by_id(ctx.client_id)
  -- (not vim.lsp.get_buffers_by_client_id: deprecated in 0.12)
  for bufnr in pairs(client and client.attached_buffers or {}) do
    if vim.lsp.inlay_hint.is_enabled({ bufnr = bufnr }) then
      vim.lsp.inlay_hint.enable(true, { bufnr = bufnr })
    end
  end
  return vim.NIL
end

function M.setup(opts)
  opts = opts or {}
  vim.lsp.config('coverlay', {
    cmd = opts.cmd or { 'coverlay', 'lsp' },
    filetypes = opts.filetypes or { 'rust' },
    root_markers = opts.root_markers or { 'Cargo.toml' },
    init_options = opts.settings or {},
    settings = { coverlay = opts.settings or {} },
    handlers = { ['workspace/inlayHint/refresh'] = M.on_inlay_hint_refresh },
  })
  vim.lsp.enable('coverlay')

  local group = vim.api.nvim_create_augroup('coverlay', { clear = true })
  vim.api.nvim_create_autocmd('LspAttach', {
    group = group,
    callback = function(args)
      local client = vim.lsp.get_client_by_id(args.data.client_id)
      if not client or client.name ~= 'coverlay' then return end
      local buf = args.buf
      if opts.inlay_hints ~= false then
        vim.lsp.inlay_hint.enable(true, { bufnr = buf })
      end
      if opts.code_lens ~= false and native_code_lens() then
        vim.lsp.codelens.enable(true, { bufnr = buf })
      elseif opts.code_lens ~= false then
        vim.lsp.codelens.refresh({ bufnr = buf })
        vim.api.nvim_create_autocmd({ 'BufWritePost', 'DiagnosticChanged' }, {
          group = group,
          buffer = buf,
          callback = function() vim.lsp.codelens.refresh({ bufnr = buf }) end,
        })
      end
    end,
  })
end

--- Runs a coverlay command (`coverlay.rerunAll`, `coverlay.writeLcov`, ...) on the current buffer's
--- coverlay client.
function M.command(name, arguments)
  for _, client in ipairs(vim.lsp.get_clients({ name = 'coverlay', bufnr = 0 })) do
    client:exec_cmd({ title = name, command = name, arguments = arguments })
  end
end

return M

-- wrk: each request takes the next line of the request list (one path per line, every application in
-- turn), so a closed-loop run spreads its load over all the applications as the open-loop one does.
-- The list's path comes after `--` on wrk's command line.
local paths = {}
local next_index = 0

function init(args)
  for line in io.lines(args[1]) do
    if #line > 0 then
      paths[#paths + 1] = line
    end
  end
end

function request()
  next_index = next_index % #paths + 1
  return wrk.format("GET", paths[next_index])
end

-- what-if: the SQL-standard-body helpers without SET search_path.  Their
-- bodies are parsed, and their names bound, at CREATE time, so the setting
-- buys nothing; without it the planner can inline them instead of running
-- each call through the SQL-function executor (parse tree read back with
-- stringToNode, planned, GUC nest level pushed and popped) in every transaction.
ALTER FUNCTION stripepay._rank(text, text) RESET search_path;
ALTER FUNCTION stripepay._terminal(text, text) RESET search_path;
ALTER FUNCTION stripepay._advances(text, text, timestamptz, text, timestamptz) RESET search_path;
ALTER FUNCTION stripepay._id(text) RESET search_path;

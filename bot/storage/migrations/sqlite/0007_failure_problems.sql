-- A failure kept as data (its message keys and values, JSON), so each reader is told it in their
-- own language. error_message keeps the words in the job's language; rows failed before this
-- version have only those.
ALTER TABLE jobs ADD COLUMN error_problems TEXT;

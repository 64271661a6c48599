-- The size of the images DashScope made, as its answer reported it (usage.size; not every
-- model reports it, and an edit without a size is the service's choice).
ALTER TABLE jobs ADD COLUMN result_size TEXT;

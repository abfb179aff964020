-- The advisory lock that serialises creating a subject's key with erasing the subject, so no key
-- is created after (or while) the subject is erased. Namespaced by 'subject' apart from the other
-- lock keys.
CREATE OR REPLACE FUNCTION eventstore.subject_lock_key(p_instance TEXT, p_subject TEXT)
RETURNS BIGINT
LANGUAGE sql IMMUTABLE AS $$
    SELECT hashtextextended('subject' || chr(31) || p_instance || chr(31) || p_subject, 0)
$$;

# Django's Arabic formats set separators but no grouping, so a crowd's count read "50001";
# grouped by thousands with Django's separator, as its German and English counts are.
NUMBER_GROUPING = 3

/* placeholder: not written yet */
typedef int sac_placeholder_t;

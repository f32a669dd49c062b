/* Fork templates: frozen memory images that children (and a forked source) map copy-on-write,
 * referenced by a small "template" file in each instance dir and collected when unreferenced. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "instance/manager-internal.h"
#include "instance/warm.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/xalloc.h"

int
inst_template_get(struct inst *i, char ret_tid[INST_ID_LEN + 1])
{
    _cleanup_free_ char *text = NULL;
    size_t len;

    if (fs_read_file(i->paths.template_ref, 64, &text, &len, NULL) < 0)
        return 0;
    text[strcspn(text, "\n")] = '\0';
    if (!store_id_valid(text))
        return 0;
    memcpy(ret_tid, text, INST_ID_LEN + 1);
    return 1;
}

int
inst_template_set(struct inst *i, const char *tid, struct tp_err *err)
{
    return fs_write_atomic(i->paths.template_ref, tid, strlen(tid), 0600, err);
}

void
inst_template_clear(struct inst *i)
{
    unlink(i->paths.template_ref);
}

static void
closedirp(DIR **d)
{
    if (*d)
        closedir(*d);
}

/* Whether any instance dir's "template" file names tid. */
static bool
template_in_use(const char *instances, const char *tid)
{
    _cleanup_(closedirp) DIR *d = opendir(instances);
    struct dirent *de;

    while (d && (de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        _cleanup_free_ char *ref = xasprintf("%s/%s/template", instances, de->d_name);
        _cleanup_free_ char *text = NULL;
        if (fs_read_file(ref, 64, &text, NULL, NULL) < 0)
            continue;
        text[strcspn(text, "\n")] = '\0';
        if (strcmp(text, tid) == 0)
            return true;
    }
    return false;
}

void
manager_template_pin(struct inst_manager *m, const char *tid)
{
    if (m->n_pinned == m->cap_pinned) {
        m->cap_pinned = m->cap_pinned ? m->cap_pinned * 2 : 4;
        m->pinned = xrealloc(m->pinned, m->cap_pinned * sizeof(*m->pinned));
    }
    snprintf(m->pinned[m->n_pinned++], sizeof(*m->pinned), "%s", tid);
}

void
manager_template_unpin(struct inst_manager *m, const char *tid)
{
    pthread_mutex_lock(&m->template_lock);
    for (size_t k = 0; k < m->n_pinned; k++)
        if (strcmp(m->pinned[k], tid) == 0) {
            memmove(m->pinned[k], m->pinned[--m->n_pinned], sizeof(*m->pinned));
            break;
        }
    pthread_mutex_unlock(&m->template_lock);
}

static bool
template_pinned(struct inst_manager *m, const char *tid)
{
    for (size_t k = 0; k < m->n_pinned; k++)
        if (strcmp(m->pinned[k], tid) == 0)
            return true;
    return false;
}

void
manager_template_gc(struct inst_manager *m)
{
    _cleanup_free_ char *templates = paths_templates_dir(m->data_dir);
    _cleanup_free_ char *instances = paths_instances_dir(m->data_dir);
    _cleanup_(closedirp) DIR *d = NULL;
    struct dirent *de;

    pthread_mutex_lock(&m->template_lock);
    d = opendir(templates);
    while (d && (de = readdir(d))) {
        if (de->d_name[0] == '.' || template_pinned(m, de->d_name) ||
            template_in_use(instances, de->d_name) ||
            warm_template_kept(m, de->d_name)) /* warm.c: kept for later runs */
            continue;
        _cleanup_free_ char *dir = fs_path_join(templates, de->d_name);
        struct tp_err e = { 0 };
        if (fs_rm_rf(dir, &e) < 0)
            log_warn("remove unused template '%s': %s", dir, tp_err_msg(&e));
        else
            log_debug("removed unused template '%s'", dir);
        tp_err_clear(&e);
    }
    pthread_mutex_unlock(&m->template_lock);
}
